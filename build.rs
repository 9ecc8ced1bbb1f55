//! Stamps the build with its git commit (the policy engine's "code version" on every decision
//! trace). Outside a git checkout the crate version is used instead.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    Command::new("git")
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn main() {
    // Rebuild when the commit changes. Git tells where HEAD and the branches live: in a worktree
    // `.git` is a file, and naming a path that does not exist would rerun this script (and
    // rebuild the crate) on every build.
    let watched = [
        git(&["rev-parse", "--git-path", "HEAD"]),
        git(&["rev-parse", "--git-path", "refs/heads"]),
        git(&["rev-parse", "--git-path", "packed-refs"]),
    ];
    for path in watched.into_iter().flatten() {
        if Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
    // `sqlx::migrate!` embeds the migration files at compile time but does not tell cargo to
    // watch their directories: without these lines a migration added since the last build is
    // missing from the binary (and from the tests) until something else changes.
    println!("cargo:rerun-if-changed=migrations");
    let sha = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_default();
    // Not under `PASSKEY_`: cargo also hands `rustc-env` variables to the process in `cargo run`,
    // where that prefix means a setting, and an unknown one stops the bot from starting.
    println!("cargo:rustc-env=BUILD_GIT_SHA={sha}");
}
