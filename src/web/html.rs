//! The page shell every HTML page shares: plain, server-rendered, one stylesheet and at most one
//! script, both from `/static/` (the CSP allows nothing else).

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A whole page. `head_extra` is trusted markup (meta tags, the script element); `body` likewise —
/// callers escape every value they put in it.
pub fn page(status: StatusCode, title: &str, head_extra: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"referrer\" content=\"no-referrer\">\
         <title>{title} · Passkey</title><link rel=\"stylesheet\" href=\"/static/passkey.css\">{head_extra}</head>\
         <body><header><p class=\"brand\">Passkey</p></header><main id=\"main\">{body}</main></body></html>",
        title = escape(title)
    );
    (status, Html(html)).into_response()
}

/// The sign-out button (a CSRF-checked POST to `/signout`), styled as a link.
pub fn sign_out_form(csrf: &str) -> String {
    format!(
        "<form method=\"post\" action=\"/signout\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <button type=\"submit\" class=\"link\">Sign out</button></form>",
        escape(csrf)
    )
}

/// A page that only says something (refusals, errors).
pub fn message(status: StatusCode, title: &str, sentences: &str) -> Response {
    page(
        status,
        title,
        "",
        &format!("<h1>{}</h1><p>{}</p>", escape(title), escape(sentences)),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn markup_is_escaped() {
        assert_eq!(
            super::escape("<a href=\"x\">'&"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;"
        );
    }
}
