//! `docker-compose.yml` and `Dockerfile`, checked without a container engine (none runs on the
//! machines that build Hermes): Debian's `docker-compose` resolves and validates the file, the
//! file is validated against the Compose specification's JSON schema that package ships, and
//! the `hermes` binary is run with every service's command and environment (`--dry-run`) to
//! show that each flag and variable is accepted and that every published port is one the node
//! listens on. Nothing here starts a container.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::harness::*;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The Compose specification's schema, as Debian's docker-compose ships it.
const SCHEMA: &str = "/usr/lib/python3/dist-packages/compose/config/compose_spec.json";

/// The variables the file requires, set for the check.
const ENV: [(&str, &str); 2] = [
    ("HERMES_CLUSTER_SECRET", "a-cluster-secret-of-32-bytes-xyz"),
    ("POSTGRES_PASSWORD", "pg-secret"),
];

fn run(command: &mut Command) -> Output {
    command.output().unwrap_or_else(|e| {
        panic!("{command:?}: {e} (scripts/test installs docker-compose and python3-jsonschema)")
    })
}

/// `file` validated against the Compose specification's schema by python3-jsonschema.
fn schema_check(file: &Path) -> Output {
    let script = "import json, sys, yaml, jsonschema\n\
                  doc = yaml.safe_load(open(sys.argv[1]))\n\
                  jsonschema.validate(doc, json.load(open(sys.argv[2])))\n";
    run(Command::new("python3")
        .args(["-c", script])
        .arg(file)
        .arg(SCHEMA))
}

/// The file as docker-compose resolves it (profiles on, variables interpolated), as JSON.
fn resolved(scratch: &Path) -> Value {
    let out = run(Command::new("docker-compose")
        .current_dir(repo())
        .args(["-f", "docker-compose.yml"])
        .args(["--profile", "appliance", "--profile", "compat", "config"])
        .envs(ENV));
    assert!(
        out.status.success(),
        "docker-compose config refused the file: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = scratch.join("resolved.yml");
    std::fs::write(&yaml, &out.stdout).unwrap();
    let json = run(Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        ])
        .arg(&yaml));
    assert!(
        json.status.success(),
        "{}",
        String::from_utf8_lossy(&json.stderr)
    );
    serde_json::from_slice(&json.stdout).expect("JSON from python3")
}

/// `hermes <command…> --dry-run` with the Dockerfile's and the service's environment only.
fn dry_run(command: &[String], env: &BTreeMap<String, String>) -> Result<Value, String> {
    let mut c = Command::new(hermes_bin());
    c.args(command).arg("--dry-run").env_clear();
    // The image's environment (Dockerfile `ENV`), then the service's.
    c.env("HERMES_NODE_DATA_DIR", "/var/lib/hermes/data")
        .env("HERMES_LOG_FORMAT", "json");
    c.envs(env);
    let out = c.output().unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("{e}"))
}

/// The container ports a service publishes.
fn published(service: &Value) -> Vec<u16> {
    service["ports"]
        .as_array()
        .map(|ports| {
            ports
                .iter()
                .map(|p| match p {
                    Value::Object(m) => m["target"].as_u64().unwrap() as u16,
                    Value::String(s) => s
                        .trim_end_matches("/tcp")
                        .rsplit(':')
                        .next()
                        .unwrap()
                        .parse()
                        .unwrap(),
                    other => panic!("a port given as {other}"),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn port_of(addr: &Value) -> Option<u16> {
    addr.as_str()?.rsplit(':').next()?.parse().ok()
}

#[test]
fn the_compose_file_is_valid_and_every_service_is_a_node_configuration_the_binary_accepts() {
    let file = repo().join("docker-compose.yml");
    phase(
        1,
        "The Compose specification's schema accepts the file, and refuses a broken one.",
    );
    let out = schema_check(&file);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &broken,
        text.replace("profiles: [compat]", "profiles: compat"),
    )
    .unwrap();
    assert!(
        !schema_check(&broken).status.success(),
        "the schema check must be able to fail"
    );

    phase(
        2,
        "docker-compose resolves it; each hermes service's command runs.",
    );
    let config = resolved(dir.path());
    let services = config["services"].as_object().unwrap();
    let mut checked = Vec::new();
    for (name, service) in services {
        if service["image"] != "hermes:local" {
            continue;
        }
        let command: Vec<String> = service["command"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: the command is a list"))
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
        let env: BTreeMap<String, String> = service["environment"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        for key in env.keys() {
            assert!(key.starts_with("HERMES_"), "{name}: {key}");
        }
        let summary = dry_run(&command, &env)
            .unwrap_or_else(|e| panic!("{name}: the node refuses its configuration: {e}"));
        let listens: Vec<u16> = summary["listen"]
            .as_object()
            .unwrap()
            .values()
            .filter_map(port_of)
            .collect();
        for port in published(service) {
            assert!(
                listens.contains(&port),
                "{name} publishes {port}, but the node listens on {listens:?}"
            );
        }
        checked.push((name.clone(), summary));
    }
    let by_name: BTreeMap<_, _> = checked.into_iter().collect();
    assert_eq!(
        by_name.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "hermes-1",
            "hermes-2",
            "hermes-3",
            "hermes-controller",
            "hermes-gateway",
            "hermes-server"
        ]
    );
    for n in ["hermes-1", "hermes-2", "hermes-3"] {
        assert_eq!(by_name[n]["raft"], true, "{n}");
        assert_eq!(by_name[n]["roles"].as_array().unwrap().len(), 3, "{n}");
    }
    assert_eq!(
        by_name["hermes-server"]["control_store"]["postgres"],
        "postgres:5432"
    );
    assert_eq!(by_name["hermes-server"]["raft"], false);
    assert_eq!(by_name["hermes-controller"]["controller"], true);
    assert_eq!(
        by_name["hermes-gateway"]["config_store"]["etcd"],
        serde_json::json!(["http://etcd:2379"])
    );

    phase(
        3,
        "The Dockerfile exposes the node's default listeners and runs the binary.",
    );
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let defaults = dry_run(&["node".to_string()], &BTreeMap::new()).unwrap();
    let default_ports: Vec<u16> = defaults["listen"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(port_of)
        .collect();
    let expose = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("EXPOSE "))
        .expect("an EXPOSE line");
    let exposed: Vec<u16> = expose
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    let mut a = exposed.clone();
    let mut b = default_ports.clone();
    a.sort();
    b.sort();
    assert_eq!(a, b, "EXPOSE {expose} against the defaults {defaults}");
    assert!(dockerfile.contains("ENTRYPOINT [\"hermes\"]"));
}
