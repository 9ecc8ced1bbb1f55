//! Fuzz targets that run on stable under `cargo test` (#17.5): proptest over arbitrary bytes and
//! over mutations of valid examples, one module per parser that reads what a caller sends.
//!
//! | target | what it feeds |
//! |---|---|
//! | `activity` | `Activity::from_json`, and `POST /api/messages` on the dev-mode app |
//! | `commands` | `normalize`, `parse`, `parse_duration` |
//! | `channel_token` | `ChannelAuth::verify` against a loopback issuer, and `POST /api/messages` with an app id |
//! | `card_actions` | `from_execute` / `from_submit` |
//! | `cookies` | `CookieKey::open_session` / `open_flow`, `cookie`, and the issuance page's extractors over HTTP |
//! | `audit_trail` | `read_index`, `read_keys`, `verify_file` on edited exports |
//!
//! Every target checks that nothing panics, that a refused input gets the error the edge maps to
//! its 4xx, and that a refused input changes nothing. CI runs a bounded number of cases (the
//! defaults below keep `cargo test --test it fuzz::` to well under 30 s on two cores, debug build);
//! run longer by hand with `PASSKEY_FUZZ_CASES=100000 cargo test --test it fuzz::`. A failure
//! proptest finds is written to `tests/proptest-regressions/fuzz/<target>.txt` and replayed first on
//! every later run: commit that file with the fix.

mod activity;
mod audit_trail;
mod card_actions;
mod channel_token;
mod commands;
mod cookies;

use proptest::prelude::*;
use serde_json::{Value, json};

/// Cases per target: `PASSKEY_FUZZ_CASES` when set, else the target's CI default.
pub fn cases(ci_default: u32) -> u32 {
    std::env::var("PASSKEY_FUZZ_CASES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(ci_default)
}

/// The proptest configuration of a target whose CI run is `ci_default` cases.
pub fn config(ci_default: u32) -> ProptestConfig {
    ProptestConfig {
        cases: cases(ci_default),
        max_shrink_iters: 512,
        ..ProptestConfig::default()
    }
}

/// A runtime for the targets that talk to a server: proptest's bodies are synchronous, so each
/// case `block_on`s here (the test thread is not inside a runtime).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// One edit of a byte string. Positions are taken modulo the length, so any edit applies to any
/// input.
#[derive(Debug, Clone)]
pub enum ByteEdit {
    Flip { at: usize, bit: u8 },
    Set { at: usize, byte: u8 },
    Delete { at: usize, len: usize },
    Insert { at: usize, bytes: Vec<u8> },
    Truncate { at: usize },
    Repeat { at: usize, len: usize },
}

/// Bytes that matter to the parsers: JSON punctuation, base64url's alphabet edges, separators.
const INTERESTING: &[u8] = b"{}[]\",:.-_=;/\\ \t\r\n0019azAZ+%#<>&\x00\x7f\x80\xc3\xff";

pub fn byte_edit() -> impl Strategy<Value = ByteEdit> {
    let byte = prop_oneof![any::<u8>(), proptest::sample::select(INTERESTING)];
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| ByteEdit::Flip { at, bit }),
        (any::<usize>(), byte.clone()).prop_map(|(at, byte)| ByteEdit::Set { at, byte }),
        (any::<usize>(), 1usize..16).prop_map(|(at, len)| ByteEdit::Delete { at, len }),
        (any::<usize>(), proptest::collection::vec(byte, 1..8))
            .prop_map(|(at, bytes)| ByteEdit::Insert { at, bytes }),
        any::<usize>().prop_map(|at| ByteEdit::Truncate { at }),
        (any::<usize>(), 1usize..64).prop_map(|(at, len)| ByteEdit::Repeat { at, len }),
    ]
}

pub fn byte_edits() -> impl Strategy<Value = Vec<ByteEdit>> {
    proptest::collection::vec(byte_edit(), 1..6)
}

/// `bytes` with `edits` applied in order.
pub fn apply_bytes(bytes: &[u8], edits: &[ByteEdit]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for edit in edits {
        let n = out.len();
        let pos = |at: usize| if n == 0 { 0 } else { at % n };
        match edit {
            ByteEdit::Flip { at, bit } if n > 0 => out[pos(*at)] ^= 1 << bit,
            ByteEdit::Set { at, byte } if n > 0 => out[pos(*at)] = *byte,
            ByteEdit::Delete { at, len } if n > 0 => {
                let from = pos(*at);
                out.drain(from..(from + len).min(n));
            }
            ByteEdit::Insert { at, bytes } => {
                let at = if n == 0 { 0 } else { at % (n + 1) };
                out.splice(at..at, bytes.iter().copied());
            }
            ByteEdit::Truncate { at } => out.truncate(pos(*at)),
            ByteEdit::Repeat { at, len } if n > 0 => {
                let from = pos(*at);
                let piece = out[from..(from + len).min(n)].to_vec();
                out.splice(from..from, piece);
            }
            _ => {}
        }
    }
    out
}

/// `text` with byte edits, kept only where the result is still UTF-8 (for inputs that are
/// strings by type, such as header values and command text).
pub fn apply_text(text: &str, edits: &[ByteEdit]) -> String {
    String::from_utf8_lossy(&apply_bytes(text.as_bytes(), edits)).into_owned()
}

/// One edit of a JSON document: at the `at`-th node (depth first, modulo the node count).
#[derive(Debug, Clone)]
pub enum JsonEdit {
    /// Removes the node from its object or array (the root becomes `null`).
    Drop { at: usize },
    /// Replaces the node with another value (often of another type).
    Replace { at: usize, with: Value },
    /// Adds a member to the node when it is an object.
    Add {
        at: usize,
        name: String,
        with: Value,
    },
}

/// Values that break assumptions: other types, edges of number ranges, very long and very deep
/// values, text with control and bidi characters, markup.
pub fn weird_value() -> impl Strategy<Value = Value> {
    let fixed = proptest::sample::select(vec![
        Value::Null,
        json!(true),
        json!(false),
        json!(0),
        json!(-1),
        json!(1.5),
        json!(-0.0),
        json!(1e308),
        json!(i64::MAX),
        json!(i64::MIN),
        json!(u64::MAX),
        json!(""),
        json!(" "),
        json!("0"),
        json!("-1"),
        json!("#0"),
        json!("9223372036854775808"),
        json!("\u{0}\u{202e}\u{feff}\u{200b}"),
        json!("<at>x</at><b>&amp;&#x0;&lt;"),
        json!("https://evil.example/"),
        json!("http://127.0.0.1:1/"),
        json!({}),
        json!([]),
        json!([null]),
        json!({"id": 1}),
        json!({"id": "x", "id2": [1, {"a": null}]}),
    ]);
    prop_oneof![
        4 => fixed,
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        1 => ".{0,40}".prop_map(Value::String),
        1 => (1usize..200_000).prop_map(|n| Value::String("x".repeat(n))),
        1 => (1usize..300).prop_map(|depth| {
            let mut v = json!(1);
            for _ in 0..depth {
                v = json!([v]);
            }
            v
        }),
        1 => (1usize..2_000).prop_map(|n| Value::Array(vec![json!({"k": "v"}); n])),
    ]
}

pub fn json_edit() -> impl Strategy<Value = JsonEdit> {
    prop_oneof![
        1 => any::<usize>().prop_map(|at| JsonEdit::Drop { at }),
        3 => (any::<usize>(), weird_value()).prop_map(|(at, with)| JsonEdit::Replace { at, with }),
        1 => (any::<usize>(), "[a-zA-Z]{1,12}", weird_value())
            .prop_map(|(at, name, with)| JsonEdit::Add { at, name, with }),
    ]
}

pub fn json_edits() -> impl Strategy<Value = Vec<JsonEdit>> {
    proptest::collection::vec(json_edit(), 1..4)
}

/// JSON pointers to every node of `v`, depth first, the root first.
pub fn pointers(v: &Value) -> Vec<String> {
    fn walk(v: &Value, here: String, out: &mut Vec<String>) {
        out.push(here.clone());
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    let k = k.replace('~', "~0").replace('/', "~1");
                    walk(child, format!("{here}/{k}"), out);
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    walk(child, format!("{here}/{i}"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, String::new(), &mut out);
    out
}

/// `doc` with `edits` applied, skipping nodes `keep` says to leave alone (by pointer).
pub fn apply_json(doc: &Value, edits: &[JsonEdit], keep: &dyn Fn(&str) -> bool) -> Value {
    let mut doc = doc.clone();
    for edit in edits {
        let candidates: Vec<String> = pointers(&doc).into_iter().filter(|p| !keep(p)).collect();
        if candidates.is_empty() {
            continue;
        }
        let pick = |at: &usize| candidates[at % candidates.len()].clone();
        match edit {
            JsonEdit::Drop { at } => {
                let p = pick(at);
                match p.rsplit_once('/') {
                    None => doc = Value::Null,
                    Some((parent, last)) => match doc.pointer_mut(parent) {
                        Some(Value::Object(map)) => {
                            map.remove(&last.replace("~1", "/").replace("~0", "~"));
                        }
                        Some(Value::Array(items)) => {
                            if let Ok(i) = last.parse::<usize>()
                                && i < items.len()
                            {
                                items.remove(i);
                            }
                        }
                        _ => {}
                    },
                }
            }
            JsonEdit::Replace { at, with } => {
                if let Some(node) = doc.pointer_mut(&pick(at)) {
                    *node = with.clone();
                }
            }
            JsonEdit::Add { at, name, with } => {
                if let Some(Value::Object(map)) = doc.pointer_mut(&pick(at)) {
                    map.insert(name.clone(), with.clone());
                }
            }
        }
    }
    doc
}

/// Applies nothing: every node may be edited.
pub fn edit_anything(_: &str) -> bool {
    false
}
