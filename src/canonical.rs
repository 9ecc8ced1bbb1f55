//! Canonical JSON and SHA-256: the one way Passkey turns structured data into stable bytes.
//! Used for policy inputs hashes, audit hash chains and policy versions; identical data gives
//! identical bytes across runs, machines and key orders.

use serde_json::Value;

/// JSON with object keys sorted (by UTF-8 bytes), no whitespace, nulls written out.
/// Sorting is done here rather than trusting serde_json's map order, which a feature flag
/// anywhere in the build (`preserve_order`) could change.
pub fn canonical_json(value: &Value) -> String {
    let mut out = Vec::with_capacity(256);
    write_value(value, &mut out);
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

/// Appends the canonical JSON of `value` to `out`: the bytes [`canonical_json`] gives, for
/// callers that assemble a larger canonical document without building it as a `Value` first.
pub fn write_canonical_json(value: &Value, out: &mut Vec<u8>) {
    write_value(value, out);
}

/// Appends a JSON string literal (quoted and escaped exactly as in [`canonical_json`]).
pub fn write_json_str(s: &str, out: &mut Vec<u8>) {
    serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
}

fn write_value(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, key).expect("writing to a Vec cannot fail");
                out.push(b':');
                write_value(item, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out);
            }
            out.push(b']');
        }
        scalar => serde_json::to_writer(&mut *out, scalar).expect("writing to a Vec cannot fail"),
    }
}

/// Lower-case hex SHA-256 of some bytes.
pub fn sha256_hex(bytes: impl AsRef<[u8]>) -> String {
    hex::encode(sha256(bytes))
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: impl AsRef<[u8]>) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes.as_ref());
    let mut out = [0; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// SHA-256 of the canonical JSON of a value.
pub fn hash_canonical(value: &Value) -> String {
    sha256_hex(canonical_json(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_order_and_whitespace_do_not_change_the_bytes() {
        let a: Value =
            serde_json::from_str(r#"{ "b": 1, "a": {"y": null, "x": [3, "z"]} }"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a":{"x":[3,"z"],"y":null},"b":1}"#).unwrap();
        assert_eq!(canonical_json(&a), r#"{"a":{"x":[3,"z"],"y":null},"b":1}"#);
        assert_eq!(hash_canonical(&a), hash_canonical(&b));
    }

    #[test]
    fn different_values_hash_differently_and_nulls_count() {
        assert_ne!(
            hash_canonical(&json!({"a": null})),
            hash_canonical(&json!({}))
        );
        assert_ne!(
            hash_canonical(&json!([1, 2])),
            hash_canonical(&json!([2, 1]))
        );
    }

    #[test]
    fn strings_are_escaped_as_json() {
        assert_eq!(
            canonical_json(&json!({"q\"": "line\nbreak"})),
            r#"{"q\"":"line\nbreak"}"#
        );
        // Known vector: SHA-256 of the empty string.
        assert_eq!(
            sha256_hex(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
