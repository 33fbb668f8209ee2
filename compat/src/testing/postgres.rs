//! A real PostgreSQL server for tests: Debian's, initialized in a temporary directory and
//! listening on a free loopback port (`scripts/test` installs the package). As root it runs
//! as the `postgres` user, since PostgreSQL refuses to run as root.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::free_port;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct TestPg {
    _root: tempfile::TempDir,
    data: PathBuf,
    bin: PathBuf,
    pub port: u16,
}

fn bin_dir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (scripts/test installs it)")
        .filter_map(|e| Some(e.ok()?.path().join("bin")))
        .filter(|p| p.join("pg_ctl").exists())
        .collect();
    found.sort();
    found.pop().expect("a PostgreSQL version with pg_ctl")
}

fn as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// `program`, run as `postgres` when this is root.
fn command(program: &Path) -> Command {
    if as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run(program: &Path, args: &[&str]) {
    let out = command(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{} {args:?} failed: {}{}",
        program.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TestPg {
    pub fn start() -> TestPg {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("pg");
        std::fs::create_dir(&data).unwrap();
        if as_root() {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            let status = Command::new("chown")
                .args(["postgres:postgres", data.to_str().unwrap()])
                .status()
                .unwrap();
            assert!(status.success());
        }
        let bin = bin_dir();
        run(
            &bin.join("initdb"),
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "hermes",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ],
        );
        let pg = TestPg {
            _root: root,
            data,
            bin,
            port: free_port(),
        };
        pg.start_again();
        pg
    }

    /// Starts the server (after [`TestPg::stop`]) on the same port and data.
    pub fn start_again(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
            self.port,
            self.data.display()
        );
        let log = self.data.join("server.log");
        run(
            &self.bin.join("pg_ctl"),
            &[
                "-D",
                self.data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-o",
                &options,
                "-w",
                "start",
            ],
        );
    }

    pub fn stop(&self) {
        run(
            &self.bin.join("pg_ctl"),
            &[
                "-D",
                self.data.to_str().unwrap(),
                "-m",
                "fast",
                "-w",
                "stop",
            ],
        );
    }

    /// A DSN with a password (which `trust` authentication ignores), so that tests can check
    /// that it never appears in messages.
    pub fn dsn(&self) -> String {
        format!(
            "postgres://hermes:pw-never-shown@127.0.0.1:{}/postgres",
            self.port
        )
    }

    /// Runs SQL with `psql` (a client other than ours), returning its unaligned output.
    pub fn psql(&self, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "hermes",
            ])
            .args(["-d", "postgres", "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim_end().to_string()
    }
}

impl Drop for TestPg {
    fn drop(&mut self) {
        let _ = command(&self.bin.join("pg_ctl"))
            .args([
                "-D",
                self.data.to_str().unwrap_or(""),
                "-m",
                "immediate",
                "stop",
            ])
            .output();
    }
}
