//! Stamps the build with its git commit (the policy engine's "code version" on every decision
//! trace). Outside a git checkout the crate version is used instead.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    let sha = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    // Not under `PASSKEY_`: cargo also hands `rustc-env` variables to the process in `cargo run`,
    // where that prefix means a setting, and an unknown one stops the bot from starting.
    println!("cargo:rustc-env=BUILD_GIT_SHA={sha}");
}
