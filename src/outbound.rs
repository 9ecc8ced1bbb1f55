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
