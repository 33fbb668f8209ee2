//! A network namespace joined to this one by a veth pair, so a test can be a client that is
//! not on loopback without touching any real network: this side is 10.213.N.1, the namespace
//! 10.213.N.2 (a /30 of a private range no interface here uses). Needs root, as CI has.

use std::process::Command;

pub struct NetNs {
    name: String,
    host_if: String,
    /// The address of this side, where a server must listen to be reached from inside.
    pub host_addr: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("run ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {} (network namespaces need root and iproute2)",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl NetNs {
    pub fn create() -> NetNs {
        let n = std::process::id() % 250 + 1;
        let name = format!("hermes-t{}", std::process::id());
        let host_if = format!("hv{}", std::process::id());
        let peer_if = format!("hp{}", std::process::id());
        let host_addr = format!("10.213.{n}.1");
        let peer_addr = format!("10.213.{n}.2");
        ip(&["netns", "add", &name]);
        let ns = NetNs {
            name: name.clone(),
            host_if: host_if.clone(),
            host_addr: host_addr.clone(),
        };
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &peer_if,
        ]);
        ip(&["link", "set", &peer_if, "netns", &name]);
        ip(&["addr", "add", &format!("{host_addr}/30"), "dev", &host_if]);
        ip(&["link", "set", &host_if, "up"]);
        ip(&[
            "-n",
            &name,
            "addr",
            "add",
            &format!("{peer_addr}/30"),
            "dev",
            &peer_if,
        ]);
        ip(&["-n", &name, "link", "set", &peer_if, "up"]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        ns
    }

    /// Runs curl inside the namespace; answers (status, body).
    pub fn curl(&self, url: &str) -> (u16, String) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name, "curl", "-s", "-m", "10"])
            .args(["-w", "\n%{http_code}", url])
            .output()
            .expect("run curl in the namespace");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}
