//! Twilio's Messages API on loopback: `POST /2010-04-01/Accounts/{sid}/Messages.json` with HTTP
//! basic auth (account sid, auth token) and a form `To`, `From`, `Body`; 201 with a message
//! resource, or Twilio's 401 error document for a wrong credential. Keeps every text it accepted.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
pub const AUTH_TOKEN: &str = "twilio-auth-token-for-tests";
pub const FROM: &str = "+18005550100";

/// One text Twilio accepted.
#[derive(Clone, Debug)]
pub struct Text {
    pub to: String,
    pub from: String,
    pub body: String,
}

#[derive(Default)]
pub struct TwilioState {
    pub texts: Mutex<Vec<Text>>,
    pub refused: Mutex<usize>,
}

pub struct FakeTwilio {
    /// `http://127.0.0.1:port`: the API root (`otp.twilio_base_url`).
    pub base: String,
    pub state: Arc<TwilioState>,
}

impl FakeTwilio {
    pub async fn start() -> FakeTwilio {
        let state = Arc::new(TwilioState::default());
        let app = Router::new()
            .route(
                "/2010-04-01/Accounts/{sid}/Messages.json",
                axum::routing::post(messages),
            )
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        FakeTwilio { base, state }
    }

    pub fn texts(&self) -> Vec<Text> {
        self.state.texts.lock().unwrap().clone()
    }
}

async fn messages(
    State(state): State<Arc<TwilioState>>,
    Path(sid): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{ACCOUNT_SID}:{AUTH_TOKEN}"))
    );
    let authorized = headers.get("authorization").and_then(|v| v.to_str().ok())
        == Some(expected.as_str())
        && sid == ACCOUNT_SID;
    if !authorized {
        *state.refused.lock().unwrap() += 1;
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"code": 20003, "message": "Authenticate",
                "more_info": "https://www.twilio.com/docs/errors/20003", "status": 401})),
        )
            .into_response();
    }
    let form: HashMap<String, String> = reqwest::Url::parse(&format!("http://form/?{body}"))
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    let field = |k: &str| form.get(k).cloned().unwrap_or_default();
    state.texts.lock().unwrap().push(Text {
        to: field("To"),
        from: field("From"),
        body: field("Body"),
    });
    (
        StatusCode::CREATED,
        Json(json!({
            "sid": format!("SM{}", uuid::Uuid::new_v4().simple()),
            "account_sid": sid, "to": field("To"), "from": field("From"),
            "status": "queued", "num_segments": "1", "direction": "outbound-api",
        })),
    )
        .into_response()
}
