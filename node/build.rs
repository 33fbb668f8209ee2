//! Stamps the binary with the git commit it was built from (`hermes version`, the
//! `hermes_build_info` metric, the start-up log line). A packager building outside a checkout
//! sets `HERMES_GIT_SHA` itself; without either the binary says `unknown`.

use std::path::Path;
use std::process::Command;

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_string())
}

fn main() {
    println!("cargo:rerun-if-env-changed=HERMES_GIT_SHA");
    if std::env::var_os("HERMES_GIT_SHA").is_some() {
        return;
    }
    let Some(dir) = std::env::var_os("CARGO_MANIFEST_DIR") else {
        return;
    };
    let dir = Path::new(&dir);
    // Rebuild when the checked-out commit changes: HEAD itself, the branch it points at, and
    // packed refs (`--git-path` resolves each inside linked worktrees too).
    let mut watched = vec!["HEAD".to_string(), "packed-refs".to_string()];
    if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        watched.push(branch);
    }
    for name in watched {
        if let Some(path) = git(dir, &["rev-parse", "--git-path", &name]) {
            let path = dir.join(path);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    if let Some(sha) = git(dir, &["rev-parse", "--short=12", "HEAD"]) {
        println!("cargo:rustc-env=HERMES_GIT_SHA={sha}");
    }
}
