//! Cold-start benchmark: how long the release `passkey` binary takes from being started to its
//! first 200 from `/readyz`, against an existing (already migrated, demo data loaded) SQLite
//! database.
//!
//! One unmeasured start creates the database in a temporary directory; then each measured run
//! starts a new process on it (default settings, dev profile, `127.0.0.1:0`), reads the banner's
//! address from stdout, and GETs `/readyz` until it answers 200. A request sent before the server
//! accepts waits in the listener's backlog (the port is bound before the banner), so the first
//! answer comes as soon as the server serves. Every run is stopped with SIGTERM and waited for, so
//! each start finds the audit trail signed, as after a clean stop.
//!
//! Reported: time to the banner and to the first 200 (median, p90, min, max), with the load
//! average. `cargo bench --bench startup`; `PASSKEY_BENCH_STARTS` (default 20) sets the runs.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Start {
    banner: Duration,
    ready: Duration,
}

fn spawn(dir: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_passkey"))
        .current_dir(dir)
        .env_clear()
        .env("PASSKEY_BIND", "127.0.0.1:0")
        .env("PASSKEY_LOG__FILTER", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start passkey")
}

/// The address from the banner's first line, `passkey X listening on http://ADDR`.
fn base_url(first_line: &str) -> String {
    let addr = first_line
        .rsplit("http://")
        .next()
        .expect("banner names the address")
        .trim();
    format!("http://{addr}")
}

/// Stops the server as an orchestrator would (SIGTERM) and waits for it to finish its shutdown.
fn stop(mut child: Child) {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -TERM failed");
    let exit = child.wait().expect("wait for passkey");
    assert!(exit.success(), "passkey stopped with {exit}");
}

async fn one_start(dir: &std::path::Path, client: &reqwest::Client) -> Start {
    let started = Instant::now();
    let mut child = spawn(dir);
    let mut lines = BufReader::new(child.stdout.take().expect("stdout piped")).lines();
    let first = lines
        .next()
        .expect("passkey printed its banner")
        .expect("read the banner");
    let banner = started.elapsed();
    // Keep draining stdout so the server never writes into a closed pipe.
    let drain = std::thread::spawn(move || lines.for_each(drop));
    let url = format!("{}/readyz", base_url(&first));
    let ready = loop {
        let response = client.get(&url).send().await.expect("GET /readyz");
        if response.status() == reqwest::StatusCode::OK {
            break started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    stop(child);
    drain.join().ok();
    Start { banner, ready }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let runs: usize = std::env::var("PASSKEY_BENCH_STARTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
        .max(1);
    let dir = tempfile::tempdir().expect("temporary directory");
    // A fresh connection per request: the server is a new process every run.
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .expect("http client");
    println!(
        "machine: {} cores, load average before: {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        load_average()
    );
    // Creates, migrates and fills the database: not measured.
    let first = one_start(dir.path(), &client).await;
    println!(
        "first start (new database, migrations, demo data): {}",
        ms(first.ready)
    );
    let mut starts = Vec::with_capacity(runs);
    for _ in 0..runs {
        starts.push(one_start(dir.path(), &client).await);
    }
    println!("load average after: {}", load_average());
    println!();
    println!("| measure ({runs} starts, existing SQLite database) | median | p90 | min | max |");
    println!("|---|---|---|---|---|");
    for (name, mut figures) in [
        (
            "start → banner (listening)",
            starts.iter().map(|s| s.banner).collect::<Vec<_>>(),
        ),
        (
            "start → first 200 from /readyz",
            starts.iter().map(|s| s.ready).collect::<Vec<_>>(),
        ),
    ] {
        figures.sort();
        println!(
            "| {name} | {} | {} | {} | {} |",
            ms(percentile(&figures, 0.5)),
            ms(percentile(&figures, 0.9)),
            ms(figures[0]),
            ms(figures[figures.len() - 1])
        );
    }
}
