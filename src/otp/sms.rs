//! Text-message gateways behind [`SmsSender`]: Azure Communication Services (HMAC-SHA256 signed
//! REST), Twilio (Programmable Messaging, basic auth) and, in dev, a console sender that writes
//! the message to the log instead of sending it.
//!
//! Nothing a gateway says is passed on as text: its HTTP status and its error *code* are kept
//! (they say what went wrong), its error *message* is dropped (Twilio's echo the phone number).
//! Errors and logs show phone numbers masked (`•••• 4411`) and never the message body.

use super::code::PhoneNumber;
use crate::domain::Clock;
use async_trait::async_trait;
use aws_lc_rs::{digest, hmac};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use std::sync::Arc;
use std::time::Duration;

/// Whether trying again later may help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SmsFailure {
    /// Throttled, the gateway's fault, a timeout, unreachable: try again.
    Transient,
    /// The gateway refused this message (bad number, blocked).
    Refused,
    /// The gateway refused Passkey itself: its credentials or account configuration (HTTP 401
    /// or 403, Twilio error 20003). No text goes out until an admin fixes the setting, so it is
    /// neither retried as passing nor blamed on the person.
    Credentials,
}

/// The settings (and their environment variables) holding `provider`'s credentials, for the
/// admin alert, `admin health` and `doctor`.
pub fn credential_settings(provider: &str) -> &'static str {
    match provider {
        "twilio" => {
            "otp.twilio_account_sid and otp.twilio_auth_token (PASSKEY_OTP__TWILIO_ACCOUNT_SID, \
             PASSKEY_OTP__TWILIO_AUTH_TOKEN)"
        }
        "acs" => {
            "otp.acs_access_key and otp.acs_endpoint (PASSKEY_OTP__ACS_ACCESS_KEY, \
             PASSKEY_OTP__ACS_ENDPOINT)"
        }
        _ => "otp.sms_provider (PASSKEY_OTP__SMS_PROVIDER)",
    }
}

/// Twilio's "Authenticate" error: the account SID and auth token do not match.
const TWILIO_AUTHENTICATION_ERROR: &str = "20003";

/// Why a message was not sent. `detail` holds only the HTTP status and the gateway's error code.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{provider} did not send the message ({class:?}: {detail})")]
pub struct SmsError {
    pub provider: &'static str,
    pub class: SmsFailure,
    pub detail: String,
}

impl SmsError {
    fn new(provider: &'static str, class: SmsFailure, detail: impl Into<String>) -> Self {
        SmsError {
            provider,
            class,
            detail: detail.into(),
        }
    }

    /// Classifies an HTTP error status: 401, 403 and Twilio's 20003 refuse Passkey's own
    /// credentials or account; 408, 429 and 5xx are worth retrying; other 4xx refuse the message.
    fn from_status(provider: &'static str, status: u16, error_code: Option<String>) -> Self {
        let class = if status == 401
            || status == 403
            || error_code.as_deref() == Some(TWILIO_AUTHENTICATION_ERROR)
        {
            SmsFailure::Credentials
        } else if status == 408 || status == 429 || status >= 500 {
            SmsFailure::Transient
        } else {
            SmsFailure::Refused
        };
        let detail = match error_code {
            Some(code) => format!("HTTP {status}, error code {code}"),
            None => format!("HTTP {status}"),
        };
        SmsError::new(provider, class, detail)
    }

    fn from_reqwest(provider: &'static str, e: &reqwest::Error) -> Self {
        // reqwest's own message names the URL (Twilio's holds the account SID): not repeated.
        let what = if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "unreachable"
        } else {
            "transport error"
        };
        SmsError::new(provider, SmsFailure::Transient, what)
    }
}

/// A gateway error code, kept only if it looks like one (letters, digits, `._-`, ≤ 64).
fn sanitized_code(value: Option<&serde_json::Value>) -> Option<String> {
    let text = match value? {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => return None,
    };
    (!text.is_empty()
        && text.len() <= 64
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    .then_some(text)
}

/// Sends one text message.
#[async_trait]
pub trait SmsSender: Send + Sync {
    /// `console`, `acs`, `twilio`: for audit details and logs.
    fn provider(&self) -> &'static str;
    async fn send(&self, to: &PhoneNumber, message: &SecretString) -> Result<(), SmsError>;
    /// A harmless authenticated call that proves the credentials (`doctor`): `Ok(Some(what))`
    /// accepted, `Ok(None)` the gateway has no such call, `Err` its answer.
    async fn check_credentials(&self) -> Result<Option<String>, SmsError> {
        Ok(None)
    }
}

/// Dev only (`Settings::check` refuses it in production): the message goes to the log, marked as
/// not sent. The redaction layer (`telemetry.rs`) scrubs `code=`/`code:` shapes; the line here
/// reads "… code is 123456 …" — no `=` or `:` after a secret-looking word — so it passes through
/// unchanged, on purpose, and only here.
#[derive(Debug, Default)]
pub struct ConsoleSender;

/// The log target of the console sender's lines (not under `passkey::otp`: see
/// [`super::LOG_TARGET`]).
pub const CONSOLE_TARGET: &str = "passkey::dev_sms";

impl ConsoleSender {
    /// The exact line logged for a message (tests check it survives redaction).
    pub fn log_line(to: &PhoneNumber, message: &SecretString) -> String {
        format!(
            "DEV SMS, NOT SENT (console sender) to {} >>> {} <<<",
            to.masked(),
            message.expose_secret()
        )
    }
}

#[async_trait]
impl SmsSender for ConsoleSender {
    fn provider(&self) -> &'static str {
        "console"
    }

    async fn send(&self, to: &PhoneNumber, message: &SecretString) -> Result<(), SmsError> {
        tracing::warn!(target: CONSOLE_TARGET, "{}", Self::log_line(to, message));
        Ok(())
    }
}

/// Azure Communication Services: `POST {endpoint}/sms?api-version=2021-03-07`, signed with the
/// resource's access key (HMAC-SHA256 over the method, path and query, `x-ms-date`, host and
/// `x-ms-content-sha256`).
pub struct AcsSender {
    http: reqwest::Client,
    endpoint: reqwest::Url,
    access_key: SecretBox<Vec<u8>>,
    from: String,
    clock: Arc<dyn Clock>,
}

pub const ACS_API_VERSION: &str = "2021-03-07";

impl AcsSender {
    /// `endpoint` is the resource URL (`https://<name>.communication.azure.com`), `access_key`
    /// its base64 access key, `from` the sending number (E.164) or alphanumeric sender id.
    pub fn new(
        endpoint: &str,
        access_key: &SecretString,
        from: &str,
        timeout: Duration,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, String> {
        let endpoint = reqwest::Url::parse(endpoint.trim_end_matches('/'))
            .map_err(|_| "otp.acs_endpoint is not a URL".to_string())?;
        if endpoint.host_str().is_none() {
            return Err("otp.acs_endpoint has no host".into());
        }
        let key = B64
            .decode(access_key.expose_secret().trim())
            .map_err(|_| "otp.acs_access_key is not base64".to_string())?;
        Ok(AcsSender {
            http: http_client(timeout),
            endpoint,
            access_key: SecretBox::new(Box::new(key)),
            from: from.to_string(),
            clock,
        })
    }

    /// `Mon, 23 Nov 2026 09:00:00 GMT` (RFC 7231 IMF-fixdate).
    fn http_date(&self) -> String {
        let d = self.clock.now().datetime();
        let weekday = &d.weekday().to_string()[..3];
        let month = &d.month().to_string()[..3];
        format!(
            "{weekday}, {:02} {month} {} {:02}:{:02}:{:02} GMT",
            d.day(),
            d.year(),
            d.hour(),
            d.minute(),
            d.second()
        )
    }
}

/// What ACS signs: `METHOD\npath?query\ndate;host;content-hash`.
pub fn acs_string_to_sign(
    method: &str,
    path_and_query: &str,
    date: &str,
    host: &str,
    content_hash: &str,
) -> String {
    format!("{method}\n{path_and_query}\n{date};{host};{content_hash}")
}

/// The signature ACS expects: base64 of HMAC-SHA256 keyed with the decoded access key.
pub fn acs_signature(key: &[u8], string_to_sign: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    B64.encode(hmac::sign(&key, string_to_sign.as_bytes()).as_ref())
}

#[async_trait]
impl SmsSender for AcsSender {
    fn provider(&self) -> &'static str {
        "acs"
    }

    async fn send(&self, to: &PhoneNumber, message: &SecretString) -> Result<(), SmsError> {
        const P: &str = "acs";
        let mut url = self.endpoint.clone();
        let base_path = url.path().trim_end_matches('/').to_string();
        url.set_path(&format!("{base_path}/sms"));
        url.set_query(Some(&format!("api-version={ACS_API_VERSION}")));
        let path_and_query = format!("{}?{}", url.path(), url.query().unwrap_or_default());
        let host = match url.port() {
            Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_string(),
        };
        let body = serde_json::to_vec(&serde_json::json!({
            "from": self.from,
            "smsRecipients": [{ "to": to.e164() }],
            "message": message.expose_secret(),
            "smsSendOptions": { "enableDeliveryReport": false },
        }))
        .map_err(|_| SmsError::new(P, SmsFailure::Refused, "cannot encode the request"))?;
        let content_hash = B64.encode(digest::digest(&digest::SHA256, &body).as_ref());
        let date = self.http_date();
        let signature = acs_signature(
            self.access_key.expose_secret(),
            &acs_string_to_sign("POST", &path_and_query, &date, &host, &content_hash),
        );
        let response = self
            .http
            .post(url)
            .header("x-ms-date", &date)
            .header("x-ms-content-sha256", &content_hash)
            .header(
                "Authorization",
                format!(
                    "HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature={signature}"
                ),
            )
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| SmsError::from_reqwest(P, &e))?;
        let (status, json) = read_answer(P, response, "/error/code").await?;
        // 202 carries one result per recipient; ours is the only one.
        let result = json.pointer("/value/0");
        match result
            .and_then(|r| r.get("successful"))
            .and_then(|s| s.as_bool())
        {
            Some(true) => Ok(()),
            Some(false) => {
                let per_recipient = result
                    .and_then(|r| r.get("httpStatusCode"))
                    .and_then(|s| s.as_u64())
                    .and_then(|s| u16::try_from(s).ok())
                    .unwrap_or(500);
                Err(SmsError::from_status(P, per_recipient, None))
            }
            None => Err(SmsError::new(
                P,
                SmsFailure::Transient,
                format!("HTTP {status} without a per-recipient result"),
            )),
        }
    }
}

/// Twilio Programmable Messaging: `POST {base}/2010-04-01/Accounts/{AccountSid}/Messages.json`,
/// form `To`, `From`, `Body`, HTTP basic auth (account SID, auth token).
pub struct TwilioSender {
    http: reqwest::Client,
    base_url: String,
    account_sid: String,
    auth_token: SecretString,
    from: String,
}

impl TwilioSender {
    pub fn new(
        base_url: &str,
        account_sid: &str,
        auth_token: SecretString,
        from: &str,
        timeout: Duration,
    ) -> Result<Self, String> {
        let sid_ok = account_sid.len() == 34
            && account_sid.starts_with("AC")
            && account_sid[2..].bytes().all(|b| b.is_ascii_hexdigit());
        if !sid_ok {
            return Err("otp.twilio_account_sid must be AC followed by 32 hex digits".into());
        }
        reqwest::Url::parse(base_url)
            .map_err(|_| "otp.twilio_base_url is not a URL".to_string())?;
        Ok(TwilioSender {
            http: http_client(timeout),
            base_url: base_url.trim_end_matches('/').to_string(),
            account_sid: account_sid.to_string(),
            auth_token,
            from: from.to_string(),
        })
    }
}

#[async_trait]
impl SmsSender for TwilioSender {
    fn provider(&self) -> &'static str {
        "twilio"
    }

    async fn send(&self, to: &PhoneNumber, message: &SecretString) -> Result<(), SmsError> {
        const P: &str = "twilio";
        let url = format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            self.base_url, self.account_sid
        );
        let form = [
            ("To", to.e164()),
            ("From", self.from.as_str()),
            ("Body", message.expose_secret()),
        ];
        let response = self
            .http
            .post(url)
            .basic_auth(&self.account_sid, Some(self.auth_token.expose_secret()))
            .form(&form)
            .send()
            .await
            .map_err(|e| SmsError::from_reqwest(P, &e))?;
        read_answer(P, response, "/code").await.map(|_| ())
    }

    /// `GET /2010-04-01/Accounts/{AccountSid}.json`: reads the account (nothing is sent, nothing
    /// is charged), so a wrong SID or auth token shows before anyone needs a code.
    async fn check_credentials(&self) -> Result<Option<String>, SmsError> {
        const P: &str = "twilio";
        let url = format!(
            "{}/2010-04-01/Accounts/{}.json",
            self.base_url, self.account_sid
        );
        let response = self
            .http
            .get(url)
            .basic_auth(&self.account_sid, Some(self.auth_token.expose_secret()))
            .send()
            .await
            .map_err(|e| SmsError::from_reqwest(P, &e))?;
        let (status, json) = read_answer(P, response, "/code").await?;
        let account_status = json
            .get("status")
            .and_then(|s| s.as_str())
            .filter(|s| s.bytes().all(|b| b.is_ascii_lowercase()))
            .unwrap_or("unknown");
        if account_status != "active" {
            return Err(SmsError::new(
                P,
                SmsFailure::Credentials,
                format!("HTTP {status}, account status {account_status}"),
            ));
        }
        Ok(Some(
            "the account accepts the credentials (status active)".into(),
        ))
    }
}

/// A gateway's answer: its status and JSON body (empty when there is none), or for a non-2xx
/// status the error it means, with the gateway's error code found at the JSON pointer `code_at`
/// (ACS `/error/code`, Twilio `/code`).
async fn read_answer(
    provider: &'static str,
    response: reqwest::Response,
    code_at: &str,
) -> Result<(u16, serde_json::Value), SmsError> {
    let status = response.status().as_u16();
    let json: serde_json::Value = response.json().await.unwrap_or_default();
    if !(200..300).contains(&status) {
        return Err(SmsError::from_status(
            provider,
            status,
            sanitized_code(json.pointer(code_at)),
        ));
    }
    Ok((status, json))
}

/// No redirects (`crate::outbound`): a 307 would carry the code in the body elsewhere.
fn http_client(timeout: Duration) -> reqwest::Client {
    crate::outbound::client(Some(timeout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_console_line_keeps_the_code_through_redaction_but_masks_the_number() {
        let to = PhoneNumber::parse("+15550104411").unwrap();
        let message = SecretString::from("Your Passkey code is 493817. It expires in 5 minutes.");
        let line = ConsoleSender::log_line(&to, &message);
        let redacted = crate::telemetry::redact(&line);
        assert!(redacted.contains("493817"), "{redacted}");
        assert!(redacted.contains("•••• 4411"));
        assert!(!redacted.contains("5550104411"));
        assert!(redacted.contains("NOT SENT"));
    }

    #[test]
    fn statuses_are_classified() {
        for (status, class) in [
            (400, SmsFailure::Refused),
            (401, SmsFailure::Credentials),
            (403, SmsFailure::Credentials),
            (404, SmsFailure::Refused),
            (408, SmsFailure::Transient),
            (429, SmsFailure::Transient),
            (500, SmsFailure::Transient),
            (503, SmsFailure::Transient),
        ] {
            assert_eq!(
                SmsError::from_status("x", status, None).class,
                class,
                "{status}"
            );
        }
    }

    #[test]
    fn only_code_shaped_error_codes_are_kept() {
        use serde_json::json;
        assert_eq!(
            sanitized_code(Some(&json!(21211))).as_deref(),
            Some("21211")
        );
        assert_eq!(
            sanitized_code(Some(&json!("Denied"))).as_deref(),
            Some("Denied")
        );
        assert_eq!(
            sanitized_code(Some(&json!("The number +15550104411 is bad"))),
            None
        );
        assert_eq!(sanitized_code(Some(&json!({"a": 1}))), None);
        assert_eq!(sanitized_code(None), None);
    }

    #[test]
    fn acs_signs_the_documented_string_with_hmac_sha256() {
        assert_eq!(
            acs_string_to_sign(
                "POST",
                "/sms?api-version=2021-03-07",
                "Mon, 23 Nov 2026 09:00:00 GMT",
                "contoso.communication.azure.com",
                "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
            ),
            "POST\n/sms?api-version=2021-03-07\nMon, 23 Nov 2026 09:00:00 GMT;contoso.communication.azure.com;\
             47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
        // The well-known HMAC-SHA256 example: key "key", the quick brown fox.
        let sig = acs_signature(b"key", "The quick brown fox jumps over the lazy dog");
        assert_eq!(
            hex::encode(B64.decode(sig).unwrap()),
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }
}
