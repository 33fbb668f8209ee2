//! `hermes member …` and `hermes status`: calls to a member's admin API, printed for humans.

use std::time::Duration;

use serde_json::{json, Value};

use hermes_raft::peer_auth::PeerAuth;

use super::{Connection, MemberAction};
use crate::admin_client::AdminClient;

const TIMEOUT: Duration = Duration::from_secs(60);

pub(super) fn client(conn: &Connection) -> anyhow::Result<AdminClient> {
    let secret = match (&conn.cluster_secret, &conn.cluster_secret_file) {
        (Some(s), None) => Some(s.as_bytes().to_vec()),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("--cluster-secret-file {}: {e}", path.display()))?;
            Some(text.trim().as_bytes().to_vec())
        }
        (Some(_), Some(_)) => {
            anyhow::bail!("give --cluster-secret or --cluster-secret-file, not both")
        }
        (None, None) => None,
    };
    Ok(AdminClient::new(&conn.endpoint, PeerAuth::new(secret)))
}

fn s(v: &Value, path: &[&str]) -> String {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    match cur {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn print_members(members: &[Value]) {
    println!(
        "{:<4} {:<10} {:<6} {:<26} {:<26} {:>9} {:>6}  STATE",
        "ID", "ROLE", "VOTER", "PEER URL", "ADMIN URL", "APPLIED", "LAG"
    );
    let leader_commit = members
        .iter()
        .filter(|m| m["info"]["role"] == "leader")
        .filter_map(|m| m["info"]["commit_index"].as_u64())
        .next();
    for m in members {
        let info = &m["info"];
        let applied = info["applied_index"].as_u64();
        let lag = match (leader_commit, applied) {
            (Some(c), Some(a)) => c.saturating_sub(a).to_string(),
            _ => "-".into(),
        };
        let state = if info.is_null() {
            format!("unreachable: {}", s(m, &["error"]))
        } else {
            "ok".into()
        };
        println!(
            "{:<4} {:<10} {:<6} {:<26} {:<26} {:>9} {:>6}  {}",
            s(m, &["id"]),
            s(info, &["role"]),
            if m["voter"] == true { "yes" } else { "no" },
            s(m, &["peer_url"]),
            s(info, &["admin_url"]),
            applied.map_or("-".into(), |a| a.to_string()),
            lag,
            state
        );
    }
}

/// Runs a member or status command; returns the process exit code.
pub async fn run_cluster_command(
    conn: &Connection,
    action: Option<&MemberAction>,
    json_out: bool,
) -> anyhow::Result<()> {
    let client = client(conn)?;
    match action {
        None => {
            let status = client.get("/api/v1/cluster/status", TIMEOUT).await?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&status)?);
                return Ok(());
            }
            let node = &status["node"];
            println!(
                "cluster: {} (leader {}, term {}, revision {})",
                s(&status, &["health"]),
                s(node, &["leader"]),
                s(node, &["term"]),
                s(node, &["revision"])
            );
            let failing: Vec<String> = status["checks"]
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(_, v)| *v != "ok")
                .map(|(k, v)| format!("{k}: {}", v.as_str().unwrap_or_default()))
                .collect();
            if !failing.is_empty() {
                println!(
                    "node {} not ready: {}",
                    s(node, &["id"]),
                    failing.join("; ")
                );
            }
            print_members(
                status["members"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default(),
            );
        }
        Some(MemberAction::List { json }) => {
            let list = client.get("/api/v1/cluster/members", TIMEOUT).await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                print_members(
                    list["members"]
                        .as_array()
                        .map(Vec::as_slice)
                        .unwrap_or_default(),
                );
            }
        }
        Some(MemberAction::Add { id, peer_url }) => {
            client
                .post(
                    "/api/v1/cluster/members",
                    &json!({"id": id, "peer_url": peer_url}),
                    TIMEOUT,
                )
                .await?;
            println!("node {id} added as a learner; promote it with `hermes member promote {id}` once it has caught up");
        }
        Some(MemberAction::Promote { id }) => {
            client
                .post(
                    &format!("/api/v1/cluster/members/{id}/promote"),
                    &json!({}),
                    TIMEOUT,
                )
                .await?;
            println!("node {id} is now a voter");
        }
        Some(MemberAction::MoveLeader { id }) => {
            client
                .post(
                    &format!("/api/v1/cluster/members/{id}/lead"),
                    &json!({}),
                    TIMEOUT,
                )
                .await?;
            println!("node {id} is now the leader");
        }
        Some(MemberAction::Remove { id, force }) => {
            let path = if *force {
                format!("/api/v1/cluster/members/{id}?force=true")
            } else {
                format!("/api/v1/cluster/members/{id}")
            };
            client.delete(&path, TIMEOUT).await?;
            println!("node {id} removed");
        }
    }
    Ok(())
}
