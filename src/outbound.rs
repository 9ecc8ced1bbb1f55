//! HTTP clients for Passkey's calls out: the Bot Connector, the token endpoints, Graph, Keeper
//! Commander's service, the SMS providers and the sign-in provider.
//!
//! None of them follows a redirect. Each call goes to a URL Passkey chose and checked (the
//! Connector's host allow-list, the configured endpoints), and carries a secret or a person's
//! data: a token, Commander's `api-key`, a one-time code in an SMS body, a reply card. A 3xx
//! would send the call somewhere that check never saw — and reqwest keeps the method, the body
//! and any header but `Authorization`/`Cookie` across a 307 or 308, even to another host. None of
//! these services redirects its API calls, so a 3xx is an answer like any other refusal: the
//! caller sees its status.

use std::time::Duration;

/// A client builder with Passkey's user agent and no redirects; callers add their own limits.
pub fn builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .user_agent(concat!("passkey/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
}

/// [`builder`] built, with a time limit per request when one is given.
pub fn client(timeout: Option<Duration>) -> reqwest::Client {
    let builder = match timeout {
        Some(timeout) => builder().timeout(timeout),
        None => builder(),
    };
    builder
        .build()
        // Not `unwrap_or_default`: the default client follows redirects. Building fails only
        // where no client can be built at all (`Client::new` would then panic too).
        .expect("an HTTP client builds")
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// Answers every connection with `response` and counts the connections.
    async fn answering(
        response: String,
    ) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let _ = stream.write_all(response.as_bytes()).await;
            }
        });
        (base, seen)
    }

    /// Every client made here stops at a 307 (which keeps method, body and custom headers) and
    /// at a 302 alike: the caller sees the status, and the place it points to sees nothing.
    #[tokio::test]
    async fn a_client_from_here_answers_a_redirect_and_does_not_follow_it() {
        let (target, target_seen) =
            answering("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".into()).await;
        for status in ["307 Temporary Redirect", "302 Found"] {
            let (redirecting, _) = answering(format!(
                "HTTP/1.1 {status}\r\nlocation: {target}/elsewhere\r\ncontent-length: 0\r\n\r\n"
            ))
            .await;
            for client in [super::client(None), super::builder().build().unwrap()] {
                let answer = client
                    .post(format!("{redirecting}/api"))
                    .header("api-key", "not-for-elsewhere")
                    .body("a code")
                    .send()
                    .await
                    .unwrap();
                assert!(
                    answer.status().is_redirection(),
                    "{status}: {}",
                    answer.status()
                );
            }
        }
        assert_eq!(
            target_seen.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "nothing reached where the redirects pointed"
        );
    }
}
