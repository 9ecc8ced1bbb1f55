//! A server on loopback that answers every request `307 Temporary Redirect` to the same path and
//! query at another origin — what a misconfigured or hostile endpoint could answer Passkey's
//! outbound calls. It counts what it redirected, so a test can tell a call reached it.

use axum::Router;
use axum::http::{StatusCode, Uri, header};
use axum::response::IntoResponse;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct Redirector {
    /// `http://127.0.0.1:port`.
    pub base: String,
    hits: Arc<AtomicUsize>,
}

impl Redirector {
    /// Redirects to `to` (`http://host:port`) plus each request's path and query.
    pub async fn start(to: &str) -> Redirector {
        let hits = Arc::new(AtomicUsize::new(0));
        let to = to.trim_end_matches('/').to_string();
        let counted = hits.clone();
        let app = Router::new().fallback(move |uri: Uri| {
            let location = format!(
                "{to}{}",
                uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
            );
            counted.fetch_add(1, Ordering::SeqCst);
            async move {
                (
                    StatusCode::TEMPORARY_REDIRECT,
                    [(header::LOCATION, location)],
                )
                    .into_response()
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Redirector { base, hits }
    }

    /// Requests answered so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}
