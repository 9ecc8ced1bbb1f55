//! Telemetry (#17.2): OpenTelemetry traces and metrics over OTLP/HTTP, and `/metrics`.
//!
//! The OTLP test runs the production journey (`production::journey`: the real binary; request,
//! approval, retrieval with a texted code, release) with `telemetry.otlp_endpoint` pointing at a
//! fake OTLP receiver on loopback and `/metrics` on. It scrapes `/metrics` after the flow, stops
//! the server with SIGTERM (which flushes the exporters), decodes what the receiver got with the
//! OTLP protobuf types, and searches the raw bodies for the secrets the journey handled. The
//! binary runs in its own process: its global tracing subscriber and meter provider are its own,
//! so no other test's activity can change the counts.
//!
//! The access rules of `/metrics` are checked in process: off by default, loopback only, a
//! bearer token for anyone else, a relayed request is not local.

use crate::common;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use common::{TestServer, fresh_sqlite, test_settings};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One export the fake receiver was sent: (path, raw protobuf body).
type Export = (String, Vec<u8>);

/// What the fake receiver was sent.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<Export>>>);

async fn traces(State(got): State<Received>, body: Bytes) -> StatusCode {
    got.0
        .lock()
        .unwrap()
        .push(("/v1/traces".into(), body.to_vec()));
    StatusCode::OK
}

async fn metrics(State(got): State<Received>, body: Bytes) -> StatusCode {
    got.0
        .lock()
        .unwrap()
        .push(("/v1/metrics".into(), body.to_vec()));
    StatusCode::OK
}

/// An OTLP/HTTP receiver on loopback; its base URL.
async fn fake_otlp_receiver() -> (String, Received) {
    let got = Received::default();
    let app = Router::new()
        .route("/v1/traces", post(traces))
        .route("/v1/metrics", post(metrics))
        .with_state(got.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (base, got)
}

fn text(value: &Option<AnyValue>) -> String {
    match value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| text(&kv.value))
}

/// The sample `series` (name and labels, as `/metrics` writes them) has, if present.
fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_flow_exports_spans_and_metrics_without_a_secret_and_metrics_scrapes() {
    let (otlp, received) = fake_otlp_receiver().await;
    let mut journey = crate::production::journey(
        None,
        &[
            ("PASSKEY_TELEMETRY__OTLP_ENDPOINT", otlp.clone()),
            ("PASSKEY_TELEMETRY__SERVICE_NAME", "passkey-test".into()),
            ("PASSKEY_TELEMETRY__METRICS_ENDPOINT", "true".into()),
        ],
    )
    .await;
    let served = &journey.served;

    // `/metrics` from this machine: the counters say what the journey did.
    let scrape = reqwest::get(served.url("/metrics")).await.unwrap();
    assert_eq!(scrape.status(), 200);
    assert!(
        scrape.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"),
        "{:?}",
        scrape.headers()
    );
    let scrape = scrape.text().await.unwrap();
    let expect = |series: &str, value: f64| {
        assert_eq!(
            sample(&scrape, series),
            Some(value),
            "{series} in:\n{scrape}"
        );
    };
    expect("passkey_decisions_total{outcome=\"approved\"}", 1.0);
    expect(
        "passkey_vault_calls_total{backend=\"commander_service\",error_class=\"none\",operation=\"share_create\"}",
        1.0,
    );
    expect(
        "passkey_otp_sends_total{kind=\"retrieval\",outcome=\"sent\"}",
        1.0,
    );
    expect(
        "passkey_audit_events_total{action=\"ISSUANCE_SUCCEEDED\"}",
        1.0,
    );
    // Help, the refused request, the request, the release; one approval tap.
    expect(
        "passkey_activities_total{outcome=\"ok\",type=\"message\"}",
        4.0,
    );
    expect(
        "passkey_activities_total{outcome=\"ok\",type=\"invoke\"}",
        1.0,
    );
    expect("passkey_turn_duration_seconds_count{type=\"message\"}", 4.0);
    // The gauges, read from the database at the scrape: the request was released, its share
    // removed.
    expect("passkey_requests{status=\"RELEASED\"}", 1.0);
    expect("passkey_requests{status=\"PENDING\"}", 0.0);
    expect("passkey_leases_active", 0.0);
    expect("passkey_shares_outstanding", 0.0);
    expect("passkey_leases_expiry_lag_seconds", 0.0);
    assert!(
        sample(&scrape, "passkey_audit_chain_length").is_some_and(|n| n >= 10.0),
        "{scrape}"
    );
    assert!(
        scrape.contains("# TYPE passkey_vault_duration_seconds histogram"),
        "{scrape}"
    );
    for secret in &journey.secrets {
        assert!(!scrape.contains(secret.as_str()), "{secret} in /metrics");
    }

    // SIGTERM: the server stops gracefully and flushes what its exporters hold.
    let pid = journey.served.child.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let mut exited = false;
    for _ in 0..200 {
        if journey.served.child.try_wait().unwrap().is_some() {
            exited = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(exited, "the server stops on SIGTERM");

    let bodies = received.0.lock().unwrap().clone();
    let mut spans = Vec::new();
    let mut metric_names = BTreeSet::new();
    let mut services = BTreeSet::new();
    for (path, body) in &bodies {
        match path.as_str() {
            "/v1/traces" => {
                let request = ExportTraceServiceRequest::decode(body.as_slice())
                    .expect("an OTLP trace export");
                for rs in request.resource_spans {
                    if let Some(resource) = &rs.resource {
                        services.extend(attribute(&resource.attributes, "service.name"));
                    }
                    for ss in rs.scope_spans {
                        spans.extend(ss.spans);
                    }
                }
            }
            "/v1/metrics" => {
                let request = ExportMetricsServiceRequest::decode(body.as_slice())
                    .expect("an OTLP metrics export");
                for rm in request.resource_metrics {
                    for sm in rm.scope_metrics {
                        metric_names.extend(sm.metrics.into_iter().map(|m| m.name));
                    }
                }
            }
            _ => unreachable!(),
        }
    }
    assert_eq!(
        services,
        BTreeSet::from(["passkey-test".to_string()]),
        "{services:?}"
    );

    // Spans: every HTTP request, and each turn with its correlation id, activity id and (once
    // a use case wrote about one) its request number.
    let turns: Vec<_> = spans.iter().filter(|s| s.name == "turn").collect();
    assert_eq!(
        turns.len(),
        5,
        "{:?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    for turn in &turns {
        let correlation = attribute(&turn.attributes, "correlation_id").unwrap_or_default();
        assert!(
            uuid::Uuid::parse_str(&correlation).is_ok(),
            "the x-request-id: {correlation:?}"
        );
        let activity = attribute(&turn.attributes, "activity_id").unwrap_or_default();
        assert!(activity.starts_with("activity-"), "{activity:?}");
    }
    let request = journey.request_id.to_string();
    assert!(
        turns
            .iter()
            .any(|t| attribute(&t.attributes, "request_number").as_deref() == Some(&request)),
        "a turn names request {request}"
    );
    assert!(
        spans.iter().any(|s| s.name == "http"
            && attribute(&s.attributes, "path").as_deref() == Some("/api/messages")),
        "the HTTP spans arrive"
    );
    // Every turn is a child of its HTTP request's span.
    for turn in &turns {
        assert!(
            spans
                .iter()
                .any(|s| s.name == "http" && s.span_id == turn.parent_span_id),
            "turn without its http parent"
        );
    }

    // Metrics over OTLP: the same instruments.
    for name in [
        "passkey.activities",
        "passkey.turn.duration",
        "passkey.decisions",
        "passkey.audit.events",
        "passkey.vault.calls",
        "passkey.vault.duration",
        "passkey.otp.sends",
        "passkey.leases.active",
        "passkey.requests",
        "passkey.shares.outstanding",
        "passkey.audit.chain_length",
    ] {
        assert!(metric_names.contains(name), "{name} in {metric_names:?}");
    }

    // No issuance token, one-time link or texted code anywhere in what left the process.
    assert!(
        journey.secrets.iter().all(|s| s.len() >= 6),
        "{:?}",
        journey.secrets.len()
    );
    for (path, body) in &bodies {
        for secret in &journey.secrets {
            assert!(
                !body.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "a secret went out in {path}"
            );
        }
        assert!(
            !body.windows(13).any(|w| w == b"/vault/share/"),
            "a share link went out in {path}"
        );
    }
    drop(journey);
}

/// `/metrics`: 404 unless on; then loopback only (a relayed request is not local); a bearer
/// token lets others in, and without it they get 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_is_off_by_default_loopback_only_and_guarded_by_its_token() {
    let http = reqwest::Client::new();

    // Off by default.
    let db = fresh_sqlite().await;
    let server = TestServer::start(test_settings(db.dir.path(), &[]), db.store.clone()).await;
    let r = http.get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    server.stop().await;

    // On, without a token: this machine only, and not through a proxy.
    let db = fresh_sqlite().await;
    let server = TestServer::start(
        test_settings(
            db.dir.path(),
            &[("PASSKEY_TELEMETRY__METRICS_ENDPOINT", "true")],
        ),
        db.store.clone(),
    )
    .await;
    let r = http.get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .get(server.url("/metrics"))
        .header("x-forwarded-for", "203.0.113.9")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "relayed from elsewhere");
    assert!(!r.text().await.unwrap().contains("passkey_"));
    server.stop().await;

    // From another machine.
    let Some(outside) = common::tls::outside_address() else {
        panic!("this machine has no non-loopback address to test /metrics from");
    };
    const TOKEN: &str = "scrape-token-0123456789";
    for token in [None, Some(TOKEN)] {
        let db = fresh_sqlite().await;
        let mut extra = vec![("PASSKEY_TELEMETRY__METRICS_ENDPOINT", "true")];
        if let Some(token) = token {
            extra.push(("PASSKEY_TELEMETRY__METRICS_BEARER_TOKEN", token));
        }
        let listener = tokio::net::TcpListener::bind((outside, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = TestServer::start_on(
            test_settings(db.dir.path(), &extra),
            db.store.clone(),
            listener,
        )
        .await;
        let url = format!("http://{addr}/metrics");
        let anonymous = http.get(&url).send().await.unwrap();
        let wrong = http
            .get(&url)
            .bearer_auth("scrape-token-wrong-000000")
            .send()
            .await
            .unwrap();
        let right = http.get(&url).bearer_auth(TOKEN).send().await.unwrap();
        match token {
            None => {
                assert_eq!(anonymous.status(), 404);
                assert_eq!(wrong.status(), 404);
                assert_eq!(right.status(), 404);
            }
            Some(_) => {
                assert_eq!(anonymous.status(), 401);
                assert_eq!(wrong.status(), 401);
                assert_eq!(right.status(), 200);
            }
        }
        let body = anonymous.text().await.unwrap();
        assert!(!body.contains("passkey_"), "{body}");
        server.stop().await;
    }
}
