//! The issuance page's test harness: the real app on a loopback port whose `public_url` is that
//! port (so `Origin` checks and redirect URIs are real), demo data loaded, and a small cookie-
//! keeping HTTP client that signs in the way a browser does.

use super::{t0, test_settings};
use passkey::app::App;
use passkey::domain::{Clock, ManualClock};
use passkey::governance::lifecycle::Submission;
use passkey::store::{Store, User};
use reqwest::header::{HeaderMap, SET_COOKIE};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

pub const DEMO_TENANT: &str = "7f3c2a10-5e1b-4c8a-9d2e-0a1b2c3d4e5f";

/// An SMS gateway that keeps every text it is asked to send, for tests to read the code from.
#[derive(Default)]
pub struct CapturedSms {
    pub sent: Mutex<Vec<(String, String)>>,
}

#[async_trait::async_trait]
impl passkey::otp::sms::SmsSender for CapturedSms {
    fn provider(&self) -> &'static str {
        "test-capture"
    }

    async fn send(
        &self,
        to: &passkey::otp::code::PhoneNumber,
        message: &secrecy::SecretString,
    ) -> Result<(), passkey::otp::sms::SmsError> {
        use secrecy::ExposeSecret;
        self.sent
            .lock()
            .unwrap()
            .push((to.e164().to_string(), message.expose_secret().to_string()));
        Ok(())
    }
}

impl CapturedSms {
    /// The 6-digit code in the last text sent to `e164`.
    pub fn last_code_to(&self, e164: &str) -> String {
        let sent = self.sent.lock().unwrap();
        let (_, text) = sent
            .iter()
            .rev()
            .find(|(to, _)| to == e164)
            .unwrap_or_else(|| panic!("no text to {e164}: {sent:?}"));
        text.split(|c: char| !c.is_ascii_digit())
            .find(|w| w.len() == 6)
            .unwrap_or_else(|| panic!("no code in {text}"))
            .to_string()
    }
}

/// The app serving on 127.0.0.1:port with `public_url = http://127.0.0.1:port`.
pub struct WebServer {
    pub base: String,
    pub clock: Arc<ManualClock>,
    pub store: Arc<dyn Store>,
    pub state: passkey::app::AppState,
    pub data_dir: std::path::PathBuf,
    /// Texts the second factor sent.
    pub sms: Arc<CapturedSms>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl WebServer {
    /// Dev settings with demo data; `extra` adds or overrides `PASSKEY_*` values.
    pub async fn start(
        store: Arc<dyn Store>,
        data_dir: &std::path::Path,
        extra: &[(&str, &str)],
    ) -> WebServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let mut env: Vec<(&str, &str)> =
            vec![("PASSKEY_DEMO_DATA", "true"), ("PASSKEY_PUBLIC_URL", &base)];
        env.extend_from_slice(extra);
        let settings = test_settings(data_dir, &env);
        settings.check().expect("test settings are safe");
        let clock = Arc::new(ManualClock::new(t0()));
        let mut app = App::with_store(settings, store.clone(), clock.clone() as Arc<dyn Clock>)
            .await
            .expect("build app");
        // The same second factor, texting into a capture instead of the dev log.
        let sms = Arc::new(CapturedSms::default());
        let key = passkey::app::data_key(&app.state.settings)
            .await
            .expect("data key");
        app.state.otp = Arc::new(
            passkey::otp::OtpService::new(
                store.clone(),
                clock.clone() as Arc<dyn Clock>,
                Arc::new(key),
                sms.clone(),
                app.state.settings.otp.clone(),
            )
            .with_directory(app.state.directory.clone())
            .with_notifier(app.state.notifier.clone()),
        );
        let state = app.state.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(app.run_until_stopped(listener, async move {
            let _ = stopped.await;
        }));
        WebServer {
            base,
            clock,
            store,
            state,
            data_dir: data_dir.to_path_buf(),
            sms,
            stop: Some(stop),
            handle: Some(handle),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn user(&self, email: &str) -> User {
        self.store
            .user_by_email(email)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no user {email}"))
    }

    /// Submits a request as `email` for `record` (LOW records are approved at once) and returns its id.
    pub async fn request(&self, email: &str, record: &str) -> i64 {
        let who = self.user(email).await;
        let change = self
            .state
            .lifecycle
            .submit(
                &who,
                &Submission {
                    record: record.into(),
                    duration_secs: Some(3600),
                    justification: "restoring the service for INC-4411".into(),
                    ticket_id: Some("INC-4411".into()),
                    break_glass: false,
                },
            )
            .await
            .unwrap_or_else(|e| panic!("submit {record}: {e}"));
        change.request.id
    }

    /// A request for `record` by `email`, approved by `approver` (routed records).
    pub async fn approved_request(&self, email: &str, record: &str, approver: &str) -> i64 {
        let id = self.request(email, record).await;
        let by = self.user(approver).await;
        self.state
            .lifecycle
            .approve(&by, id, None)
            .await
            .unwrap_or_else(|e| panic!("approve {record}: {e}"));
        id
    }

    /// Gives `email` a mobile number (as the Graph profile sync would).
    pub async fn set_phone(&self, email: &str, e164: &str) {
        let who = self.user(email).await;
        self.state
            .otp
            .set_phone(&passkey::otp::Actor::GraphSync, who.id, e164)
            .await
            .unwrap();
    }

    /// Audit actions written for a request, in order.
    pub async fn audit_actions(&self, request_id: i64) -> Vec<String> {
        self.store
            .audit_events_for_request(request_id)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect()
    }

    /// Every audit action so far.
    pub async fn all_audit_actions(&self) -> Vec<String> {
        self.store
            .audit_events_after(0, 10_000)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect()
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(handle) = self.handle.take() {
            handle.await.unwrap().unwrap();
        }
    }
}

/// A browser stand-in: keeps cookies, never follows redirects, sends the page's CSRF token.
pub struct WebClient {
    pub http: reqwest::Client,
    pub base: String,
    pub cookies: Mutex<BTreeMap<String, String>>,
    /// `X-Forwarded-For` lines sent with every request, in order (as a client and the proxies in
    /// front of the app would have written them).
    forwarded_for: Mutex<Vec<String>>,
}

impl WebClient {
    pub fn new(base: &str) -> WebClient {
        WebClient {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: base.to_string(),
            cookies: Mutex::new(BTreeMap::new()),
            forwarded_for: Mutex::new(Vec::new()),
        }
    }

    /// From now on every request carries these `X-Forwarded-For` lines (none: no header).
    pub fn set_forwarded_for(&self, lines: &[&str]) {
        *self.forwarded_for.lock().unwrap() = lines.iter().map(|l| l.to_string()).collect();
    }

    fn forwarded(&self, mut req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        for line in self.forwarded_for.lock().unwrap().iter() {
            // `header` appends: several lines stay several lines.
            req = req.header("x-forwarded-for", line);
        }
        req
    }

    pub fn cookie_header(&self) -> String {
        self.cookies
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub fn keep_cookies(&self, headers: &HeaderMap) {
        let mut jar = self.cookies.lock().unwrap();
        for value in headers.get_all(SET_COOKIE) {
            let text = value.to_str().unwrap();
            let first = text.split(';').next().unwrap();
            let (name, value) = first.split_once('=').unwrap();
            let expired = text.contains("Max-Age=0");
            if expired || value.is_empty() {
                jar.remove(name);
            } else {
                jar.insert(name.to_string(), value.to_string());
            }
        }
    }

    fn full(&self, path_or_url: &str) -> String {
        if path_or_url.starts_with("http") {
            path_or_url.to_string()
        } else {
            format!("{}{path_or_url}", self.base)
        }
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        let r = self
            .forwarded(self.http.get(self.full(path)))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.keep_cookies(r.headers());
        r
    }

    pub async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let r = self
            .forwarded(self.http.post(self.full(path)))
            .header("cookie", self.cookie_header())
            .header("origin", &self.base)
            .form(form)
            .send()
            .await
            .unwrap();
        self.keep_cookies(r.headers());
        r
    }

    /// A JSON POST as the page's script makes it: same origin, with `csrf` when given.
    pub async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
        csrf: Option<&str>,
    ) -> reqwest::Response {
        let mut req = self
            .forwarded(self.http.post(self.full(path)))
            .header("cookie", self.cookie_header())
            .header("origin", &self.base)
            .json(body);
        if let Some(csrf) = csrf {
            req = req.header("x-csrf-token", csrf);
        }
        req.send().await.unwrap()
    }

    /// Signs in through the dev page as `display_name`, arriving at `next`.
    pub async fn sign_in_dev(&self, display_name: &str, next: &str) {
        let page = self.get(&format!("/signin?next={next}")).await;
        assert_eq!(page.status(), 200);
        let html = page.text().await.unwrap();
        let form = html
            .split("<form")
            .find(|f| f.contains(&format!("Sign in as {display_name}<")))
            .unwrap_or_else(|| panic!("{display_name} is not on the dev sign-in page: {html}"));
        let csrf = attr_value(form, "name=\"csrf\" value=\"");
        let user_id = attr_value(form, "name=\"user_id\" value=\"");
        let r = self
            .post_form(
                "/signin/dev",
                &[("csrf", &csrf), ("user_id", &user_id), ("next", next)],
            )
            .await;
        assert_eq!(r.status(), 303, "dev sign-in: {}", r.text().await.unwrap());
        assert_eq!(r.headers()["location"], next);
    }

    /// Opens the issuance page and returns its CSRF token.
    pub async fn page_csrf(&self, request_id: i64) -> String {
        let r = self.get(&format!("/requests/{request_id}/issue")).await;
        assert_eq!(r.status(), 200);
        let html = r.text().await.unwrap();
        attr_value(&html, "name=\"csrf-token\" content=\"")
    }

    /// Mints a token and exchanges it, as the page's script does; returns (status, body).
    pub async fn retrieve(&self, request_id: i64, csrf: &str) -> (u16, serde_json::Value) {
        let minted = self
            .post_json(
                &format!("/api/requests/{request_id}/issuance-token"),
                &serde_json::json!({}),
                Some(csrf),
            )
            .await;
        let status = minted.status().as_u16();
        let body: serde_json::Value = minted.json().await.unwrap();
        if status != 200 {
            return (status, body);
        }
        let r = self
            .post_json(
                &format!("/api/requests/{request_id}/issue"),
                &serde_json::json!({ "token": body["token"] }),
                Some(csrf),
            )
            .await;
        (r.status().as_u16(), r.json().await.unwrap())
    }
}

/// The value after `prefix` up to the next quote.
pub fn attr_value(html: &str, prefix: &str) -> String {
    let at = html
        .find(prefix)
        .unwrap_or_else(|| panic!("no `{prefix}` in {html}"))
        + prefix.len();
    html[at..].split('"').next().unwrap().to_string()
}
