//! Embeds the UI: lists every file under `web/` and `vendor/` (but the vendoring script and its
//! notes) into `$OUT_DIR/assets.rs` as `include_bytes!` entries, with a version: a hash of every
//! path and byte, so that asset URLs change whenever any asset does and can be cached for ever.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Files that are part of the repository but not of the UI.
const SKIPPED: &[&str] = &["vendor/update.sh", "vendor/VENDOR.md"];

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk(root, &path, out);
            continue;
        }
        let relative = path
            .strip_prefix(root)
            .expect("under the crate")
            .to_string_lossy()
            .replace('\\', "/");
        if !SKIPPED.contains(&relative.as_str()) {
            out.push((relative, path));
        }
    }
}

/// 64-bit FNV-1a: a cache-busting version, not a security boundary.
fn fnv(hash: &mut u64, bytes: &[u8]) {
    for b in bytes {
        *hash ^= u64::from(*b);
        *hash = hash.wrapping_mul(0x100_0000_01b3);
    }
}

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    println!("cargo:rerun-if-changed=web");
    println!("cargo:rerun-if-changed=vendor");
    let mut files = Vec::new();
    walk(&root, &root.join("web"), &mut files);
    walk(&root, &root.join("vendor"), &mut files);
    let mut hash = 0xcbf2_9ce4_8422_2325_u64;
    let mut code = String::from("pub static ASSETS: &[(&str, &[u8])] = &[\n");
    for (name, path) in &files {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        fnv(&mut hash, name.as_bytes());
        fnv(&mut hash, &bytes);
        // Paths under web/ are served from the root of the assets directory.
        let served = name.strip_prefix("web/").unwrap_or(name);
        let _ = writeln!(
            code,
            "    ({served:?}, include_bytes!({:?})),",
            path.display().to_string()
        );
    }
    code.push_str("];\n");
    let _ = writeln!(code, "pub const VERSION: &str = \"{hash:016x}\";");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo")).join("assets.rs");
    std::fs::write(&out, code).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
}
