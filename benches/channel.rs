//! Channel benchmark: `POST /api/messages` with valid channel tokens, a `help` message whose reply
//! goes through the Connector — the whole inbound + outbound path of a Teams turn.
//!
//! Runs the release `passkey` binary as its own process (so its CPU time and RSS can be read from
//! /proc), with a local OpenID/JWKS issuer and a fake Connector served from this process on
//! loopback. Reports requests/s, p50/p99 latency, server CPU time per message and peak RSS, at 1
//! and 32 concurrent connections.
//!
//! `cargo bench --bench channel` (set `PASSKEY_BENCH_MESSAGES` to change the count per level).

#[allow(dead_code)]
#[path = "../tests/it/common/channel.rs"]
mod channel;

#[allow(dead_code)]
#[path = "../tests/it/common/tls.rs"]
mod tls;

use channel::{APP_ID, FakeConnector, Issuer, message, sign};
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Level {
    connections: usize,
    messages: usize,
    wall: Duration,
    latencies: Vec<Duration>,
    cpu_ticks: u64,
}

fn proc_cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn proc_status_kib(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn ticks_per_second() -> u64 {
    // CLK_TCK is 100 on Linux x86_64 kernels; `getconf` confirms it when present.
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

async fn drive(
    base: &str,
    service_url: &str,
    token: &str,
    connections: usize,
    total: usize,
    offset: usize,
) -> (Duration, Vec<Duration>) {
    let per_worker = total / connections;
    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..connections {
        // One client per worker, one connection each: `connections` really is the concurrency.
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .build()
            .unwrap();
        let url = format!("{base}/api/messages");
        let service_url = service_url.to_string();
        let auth = format!("Bearer {token}");
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_worker);
            for i in 0..per_worker {
                let body = message(&service_url, &format!("bench-{offset}-{w}-{i}"), "help");
                let t = Instant::now();
                let r = client
                    .post(&url)
                    .header("authorization", &auth)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::with_capacity(total);
    for w in workers {
        all.extend(w.await.unwrap());
    }
    (started.elapsed(), all)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let total: usize = std::env::var("PASSKEY_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4000);
    let issuer = Issuer::start().await;
    // The app password goes to the token endpoint over https only (azure_identity).
    let loopback = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    let ca = tls::TestCa::new(&[loopback]);
    let tokens = tls::TlsProxy::start(&ca, loopback, tls::socket_of(&issuer.base)).await;
    let connector = FakeConnector::start().await;
    let dir = tempfile::tempdir().unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_passkey"))
        .current_dir(dir.path())
        .env_clear()
        .env("PASSKEY_BIND", "127.0.0.1:0")
        .env("PASSKEY_LOG__FILTER", "warn")
        .envs(
            std::env::vars()
                .filter(|(k, _)| k == "TOKIO_WORKER_THREADS" || k.starts_with("PASSKEY_DATABASE")),
        )
        .env("PASSKEY_BOT__APP_ID", APP_ID)
        .env("PASSKEY_BOT__APP_PASSWORD", "bench-password")
        .env("PASSKEY_BOT__OPENID_METADATA_URL", issuer.bf_metadata_url())
        .env("PASSKEY_BOT__OAUTH_AUTHORITY", tokens.base())
        .env("SSL_CERT_FILE", &ca.ca_file)
        // The fake Connector is on loopback, which a bot with an app id reaches only when told.
        .env("PASSKEY_BOT__CONNECTOR_HOSTS", "127.0.0.1")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start passkey");
    let pid = child.id();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    // Keep draining the server's stdout so it never writes into a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));
    let base = format!("http://{}", first.rsplit("http://").next().unwrap().trim());

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let token = sign(
        "channel-a",
        "kid-a",
        &json!({"iss": "https://api.botframework.com", "aud": APP_ID, "exp": now + 3600, "nbf": now - 60, "serviceurl": connector.service_url}),
    );

    // Warm-up: keys fetched, connector token cached, demo data loaded, pages hot.
    drive(&base, &connector.service_url, &token, 4, 200, 0).await;

    let mut levels = Vec::new();
    for (n, connections) in [1usize, 32].into_iter().enumerate() {
        let messages = total - total % connections;
        let cpu_before = proc_cpu_ticks(pid);
        let (wall, mut latencies) = drive(
            &base,
            &connector.service_url,
            &token,
            connections,
            messages,
            n + 1,
        )
        .await;
        let cpu_ticks = proc_cpu_ticks(pid) - cpu_before;
        latencies.sort();
        levels.push(Level {
            connections,
            messages,
            wall,
            latencies,
            cpu_ticks,
        });
    }
    let peak_rss_kib = proc_status_kib(pid, "VmHWM:");
    let replies = connector.calls().len();
    child.kill().ok();
    child.wait().ok();

    let hz = ticks_per_second() as f64;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "machine: {} cores, load average at end: {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        load.trim()
    );
    println!("replies received by the fake connector: {replies}");
    println!();
    println!("| connections | messages | requests/s | p50 | p99 | server CPU per message |");
    println!("|---|---|---|---|---|---|");
    for l in &levels {
        let rps = l.messages as f64 / l.wall.as_secs_f64();
        let cpu_us = l.cpu_ticks as f64 / hz * 1e6 / l.messages as f64;
        println!(
            "| {} | {} | {:.0} | {:.2} ms | {:.2} ms | {:.0} µs |",
            l.connections,
            l.messages,
            rps,
            percentile(&l.latencies, 0.50).as_secs_f64() * 1e3,
            percentile(&l.latencies, 0.99).as_secs_f64() * 1e3,
            cpu_us
        );
    }
    println!();
    println!(
        "server peak RSS (VmHWM): {:.1} MiB",
        peak_rss_kib as f64 / 1024.0
    );
}
