//! A real etcd for tests: Debian's `etcd-server` (3.4), one member or several, in a temporary
//! directory on free loopback ports (`scripts/test` installs the package). A member can be
//! killed and started again on the same data and ports, as an outage.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::free_port;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::time::Instant;

struct Member {
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

pub struct TestEtcd {
    dir: tempfile::TempDir,
    members: Vec<Member>,
    /// Flags given to every member (`--auth-token-ttl=2`, say).
    extra: Vec<String>,
}

impl TestEtcd {
    /// One member.
    pub fn start() -> TestEtcd {
        TestEtcd::start_with(1, &[])
    }

    /// `members` members with `extra` flags each, once every one answers.
    pub fn start_with(members: usize, extra: &[&str]) -> TestEtcd {
        let mut etcd = TestEtcd {
            dir: tempfile::tempdir().unwrap(),
            members: (0..members)
                .map(|_| Member {
                    client_port: free_port(),
                    peer_port: free_port(),
                    child: None,
                })
                .collect(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        for i in 0..members {
            etcd.spawn(i);
        }
        for i in 0..members {
            etcd.wait_healthy(i);
        }
        etcd
    }

    /// `host:port` of the first member's client listener.
    pub fn endpoint(&self) -> String {
        self.endpoint_of(0)
    }

    /// `host:port` of member `i`'s client listener.
    pub fn endpoint_of(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.members[i].client_port)
    }

    /// Every member's `host:port`.
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.members.len())
            .map(|i| self.endpoint_of(i))
            .collect()
    }

    fn spawn(&mut self, i: usize) {
        let url = format!("http://{}", self.endpoint_of(i));
        let cluster: Vec<String> = self
            .members
            .iter()
            .enumerate()
            .map(|(j, m)| format!("m{j}=http://127.0.0.1:{}", m.peer_port))
            .collect();
        let peer = format!("http://127.0.0.1:{}", self.members[i].peer_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("m{i}.log")))
            .unwrap();
        let child = Command::new("etcd")
            .args(["--name", &format!("m{i}")])
            .args([
                "--data-dir",
                self.dir.path().join(format!("m{i}")).to_str().unwrap(),
            ])
            .args([
                "--listen-client-urls",
                &url,
                "--advertise-client-urls",
                &url,
            ])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &cluster.join(",")])
            .args(&self.extra)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("etcd is not installed: scripts/test installs etcd-server");
        self.members[i].child = Some(child);
    }

    fn wait_healthy(&self, i: usize) {
        let url = format!("http://{}", self.endpoint_of(i));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // `/health` answers without authentication, unlike `etcdctl endpoint health`.
            let ok = Command::new("curl")
                .args(["-sf", "-o", "/dev/null", &format!("{url}/health")])
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "etcd member {i} did not become healthy"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts the first member again (after [`TestEtcd::kill`]) and waits until it answers.
    pub fn start_again(&mut self) {
        self.start_member(0);
    }

    /// Starts member `i` again and waits until it answers.
    pub fn start_member(&mut self, i: usize) {
        self.spawn(i);
        self.wait_healthy(i);
    }

    /// `kill -9` of the first member.
    pub fn kill(&mut self) {
        self.kill_member(0);
    }

    /// `kill -9` of member `i`.
    pub fn kill_member(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A client of every member.
    pub async fn client(&self) -> etcd_client::Client {
        etcd_client::Client::connect(self.endpoints(), None)
            .await
            .unwrap()
    }
}

impl Drop for TestEtcd {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill_member(i);
        }
    }
}
