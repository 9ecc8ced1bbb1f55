//! Channel benchmark: `POST /api/messages` with valid channel tokens, a `help` message whose reply
//! goes through the Connector — the whole inbound + outbound path of a Teams turn.
//!
//! Runs the release `passkey` binary as its own process (so its CPU time and RSS can be read from
//! /proc), with a local OpenID/JWKS issuer and a fake Connector served from this process on
//! loopback. Reports requests/s, p50/p99 latency, server CPU time per message, resident memory
//! after each level and peak RSS, at 1 and 32 concurrent connections, once per database (on
//! SQLite the memory grows while the page caches fill, to their configured sizes: a run of
//! 60,000 messages per level shows where it settles):
//! - SQLite: a file in a temporary directory;
//! - Postgres: a scratch database `passkey_bench_<uuid>` created from `PASSKEY_TEST_DATABASE_URL`
//!   (default `postgres://postgres@127.0.0.1:5432/postgres`) and dropped afterwards; skipped with
//!   a note when Postgres is unreachable. The CPU time of the Postgres backends serving that
//!   database (their pids from `pg_stat_activity`, utime + stime from /proc: the server must run
//!   on this machine) is reported per message too.
//!
//! `cargo bench --bench channel`. Environment: `PASSKEY_BENCH_MESSAGES` (4000 per level),
//! `PASSKEY_BENCH_DATABASES` (`sqlite,postgres`), `PASSKEY_BENCH_SERVER` (the server binary to run
//! instead of this build's, to compare two builds on one machine).

#[allow(dead_code)]
#[path = "../tests/it/common/channel.rs"]
mod channel;

#[allow(dead_code)]
#[path = "../tests/it/common/tls.rs"]
mod tls;

#[path = "common/scratch_pg.rs"]
mod scratch_pg;

use channel::{APP_ID, FakeConnector, Issuer, message, sign};
use scratch_pg::ScratchPg;
use serde_json::json;
use sqlx::Connection;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Level {
    connections: usize,
    messages: usize,
    wall: Duration,
    latencies: Vec<Duration>,
    cpu_ticks: u64,
    /// The Postgres backends' CPU over the level (Postgres only).
    backend_ticks: Option<u64>,
    /// The server's resident memory at the end of the level: it grows with the database's page
    /// caches as the run writes new pages, up to their configured sizes.
    rss_kib: u64,
}

fn proc_cpu_ticks(pid: u32) -> u64 {
    try_proc_cpu_ticks(pid).expect("read /proc/PID/stat")
}

/// utime + stime of a process, `None` once it is gone.
fn try_proc_cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
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

enum Database {
    Sqlite,
    Postgres(ScratchPg),
}

impl Database {
    fn label(&self) -> &'static str {
        match self {
            Database::Sqlite => "SQLite",
            Database::Postgres(_) => "Postgres",
        }
    }

    /// The server's `database_url`: none for SQLite (its file in the working directory).
    fn url(&self) -> Option<String> {
        match self {
            Database::Sqlite => None,
            Database::Postgres(scratch) => Some(scratch.url()),
        }
    }

    /// CPU ticks so far of each backend serving the scratch database (Postgres only).
    async fn backend_ticks(&self) -> Option<HashMap<u32, u64>> {
        let Database::Postgres(scratch) = self else {
            return None;
        };
        let mut conn = sqlx::PgConnection::connect(&scratch_pg::admin_url())
            .await
            .ok()?;
        let pids: Vec<i32> =
            sqlx::query_scalar("SELECT pid FROM pg_stat_activity WHERE datname = $1")
                .bind(&scratch.name)
                .fetch_all(&mut conn)
                .await
                .ok()?;
        conn.close().await.ok();
        Some(
            pids.into_iter()
                .filter_map(|pid| {
                    let pid = pid as u32;
                    try_proc_cpu_ticks(pid).map(|ticks| (pid, ticks))
                })
                .collect(),
        )
    }

    async fn drop_scratch(&self) {
        if let Database::Postgres(scratch) = self {
            scratch.drop_now().await;
        }
    }
}

/// The backends' CPU between two samples: a backend that started in between counts from zero,
/// one that ended in between is lost (the server's pool keeps its connections).
fn backend_delta(before: &HashMap<u32, u64>, after: &HashMap<u32, u64>) -> u64 {
    after
        .iter()
        .map(|(pid, ticks)| ticks.saturating_sub(before.get(pid).copied().unwrap_or(0)))
        .sum()
}

/// The fakes the server talks to, shared by the runs on each database.
struct Rig {
    issuer: Issuer,
    tokens: tls::TlsProxy,
    ca: tls::TestCa,
    connector: FakeConnector,
}

struct Run {
    levels: Vec<Level>,
    peak_rss_kib: u64,
    replies: usize,
}

async fn run(rig: &Rig, database: &Database, total: usize) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let replies_before = rig.connector.calls().len();
    // Another build of the server (a copy of an earlier binary) for before/after comparisons.
    let server = std::env::var("PASSKEY_BENCH_SERVER")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_passkey").to_string());
    let mut command = Command::new(server);
    command
        .current_dir(dir.path())
        .env_clear()
        .env("PASSKEY_BIND", "127.0.0.1:0")
        .env("PASSKEY_LOG__FILTER", "warn")
        .envs(std::env::vars().filter(|(k, _)| {
            k == "TOKIO_WORKER_THREADS" || k == "PASSKEY_DATABASE_MAX_CONNECTIONS"
        }))
        .env("PASSKEY_BOT__APP_ID", APP_ID)
        .env("PASSKEY_BOT__APP_PASSWORD", "bench-password")
        .env(
            "PASSKEY_BOT__OPENID_METADATA_URL",
            rig.issuer.bf_metadata_url(),
        )
        .env("PASSKEY_BOT__OAUTH_AUTHORITY", rig.tokens.base())
        .env("SSL_CERT_FILE", &rig.ca.ca_file)
        // The fake Connector is on loopback, which a bot with an app id reaches only when told.
        .env("PASSKEY_BOT__CONNECTOR_HOSTS", "127.0.0.1")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(url) = database.url() {
        command.env("PASSKEY_DATABASE_URL", url);
    }
    let mut child = command.spawn().expect("start passkey");
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
    let service_url = &rig.connector.service_url;
    let token = sign(
        "channel-a",
        "kid-a",
        &json!({"iss": "https://api.botframework.com", "aud": APP_ID, "exp": now + 3600, "nbf": now - 60, "serviceurl": service_url}),
    );

    // Warm-up: keys fetched, connector token cached, demo data loaded, pages hot.
    drive(&base, service_url, &token, 4, 200, 0).await;

    let mut levels = Vec::new();
    for (n, connections) in [1usize, 32].into_iter().enumerate() {
        let messages = total - total % connections;
        let backends_before = database.backend_ticks().await;
        let cpu_before = proc_cpu_ticks(pid);
        let (wall, mut latencies) =
            drive(&base, service_url, &token, connections, messages, n + 1).await;
        let cpu_ticks = proc_cpu_ticks(pid) - cpu_before;
        let backend_ticks = match (backends_before, database.backend_ticks().await) {
            (Some(before), Some(after)) => Some(backend_delta(&before, &after)),
            _ => None,
        };
        latencies.sort();
        levels.push(Level {
            connections,
            messages,
            wall,
            latencies,
            cpu_ticks,
            backend_ticks,
            rss_kib: proc_status_kib(pid, "VmRSS:"),
        });
    }
    let peak_rss_kib = proc_status_kib(pid, "VmHWM:");
    child.kill().ok();
    child.wait().ok();
    Run {
        levels,
        peak_rss_kib,
        replies: rig.connector.calls().len() - replies_before,
    }
}

fn report(database: &Database, run: &Run) {
    let hz = ticks_per_second() as f64;
    let per_message = |ticks: u64, messages: usize| ticks as f64 / hz * 1e6 / messages as f64;
    let postgres = matches!(database, Database::Postgres(_));
    println!();
    println!("## {}", database.label());
    println!();
    println!("replies received by the fake connector: {}", run.replies);
    println!();
    if postgres {
        println!(
            "| connections | messages | requests/s | p50 | p99 | server CPU per message | RSS after | Postgres backends' CPU per message |"
        );
        println!("|---|---|---|---|---|---|---|---|");
    } else {
        println!(
            "| connections | messages | requests/s | p50 | p99 | server CPU per message | RSS after |"
        );
        println!("|---|---|---|---|---|---|---|");
    }
    for l in &run.levels {
        let rps = l.messages as f64 / l.wall.as_secs_f64();
        let backends = match l.backend_ticks {
            Some(ticks) if postgres => format!(" {:.0} µs |", per_message(ticks, l.messages)),
            _ if postgres => " – |".to_string(),
            _ => String::new(),
        };
        println!(
            "| {} | {} | {:.0} | {:.2} ms | {:.2} ms | {:.0} µs | {:.1} MiB |{backends}",
            l.connections,
            l.messages,
            rps,
            percentile(&l.latencies, 0.50).as_secs_f64() * 1e3,
            percentile(&l.latencies, 0.99).as_secs_f64() * 1e3,
            per_message(l.cpu_ticks, l.messages),
            l.rss_kib as f64 / 1024.0,
        );
    }
    println!();
    println!(
        "server peak RSS (VmHWM): {:.1} MiB",
        run.peak_rss_kib as f64 / 1024.0
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let total: usize = std::env::var("PASSKEY_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4000);
    let databases =
        std::env::var("PASSKEY_BENCH_DATABASES").unwrap_or_else(|_| "sqlite,postgres".to_string());
    let issuer = Issuer::start().await;
    // The app password goes to the token endpoint over https only (azure_identity).
    let loopback = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    let ca = tls::TestCa::new(&[loopback]);
    let tokens = tls::TlsProxy::start(&ca, loopback, tls::socket_of(&issuer.base)).await;
    let connector = FakeConnector::start().await;
    let rig = Rig {
        issuer,
        tokens,
        ca,
        connector,
    };

    let load = || std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "machine: {} cores, load average at start: {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        load().trim()
    );
    for name in databases.split(',').map(str::trim) {
        let database = match name {
            "sqlite" => Database::Sqlite,
            "postgres" => match ScratchPg::create().await.map(Database::Postgres) {
                Some(database) => database,
                None => continue,
            },
            other => panic!("PASSKEY_BENCH_DATABASES: unknown database {other:?}"),
        };
        let result = run(&rig, &database, total).await;
        database.drop_scratch().await;
        report(&database, &result);
        println!("load average after this run: {}", load().trim());
    }
}
