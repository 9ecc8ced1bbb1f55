//! The layers of the crate, and the check that keeps imports pointing down (issue #16).
//!
//! Every module belongs to one layer. A module may use its own layer and the layers below it,
//! never one above: that is what lets a use case run without HTTP, a policy run without a
//! database, and a change at an edge stay at the edge. `app.rs`, the composition root, builds
//! everything and is used by no module (only by the binary, `main.rs`). The unit test below reads
//! the sources, so `cargo test` (and so CI) fails naming `file:line` when an import points up.
//! The table is drawn in docs/ARCHITECTURE.md "## Shape".

/// The layers, lowest first. The order is the rule: a module may use a module of an equal or
/// lower layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Layer {
    /// Pure types and rules, and the ports use cases call out through: no I/O of their own.
    Domain,
    /// The outside world behind types: database, vault, Azure, settings, logs, files, cards.
    Adapters,
    /// The audit trail: what every use case may record, and its proof (checkpoints, export).
    Audit,
    /// What Passkey does, without HTTP: request lifecycle, authority, second factor.
    UseCases,
    /// Where requests arrive: Teams, the web, the scheduler, the command line.
    Edges,
    /// `app.rs`: builds every layer and wires them together.
    Root,
}

/// Module path (below `crate::`) → layer. The longest matching prefix decides, so a file may sit
/// lower than its folder (`audit::signer` is a port with pure verification, used by adapters).
/// A module missing here fails the check: a new module has to choose its layer.
pub const LAYERS: &[(&str, Layer)] = &[
    ("domain", Layer::Domain),
    ("policy", Layer::Domain),
    ("canonical", Layer::Domain),
    ("encoding", Layer::Domain),
    ("notify", Layer::Domain),
    ("VERSION", Layer::Domain),
    ("layers", Layer::Domain),
    ("metrics", Layer::Domain),
    ("demo::data", Layer::Domain),
    ("store", Layer::Adapters),
    ("vault", Layer::Adapters),
    ("azure", Layer::Adapters),
    ("channel", Layer::Adapters),
    ("openid", Layer::Adapters),
    ("crypto", Layer::Adapters),
    ("config", Layer::Adapters),
    ("telemetry", Layer::Adapters),
    ("private_fs", Layer::Adapters),
    ("outbound", Layer::Adapters),
    ("cards", Layer::Adapters),
    ("audit::signer", Layer::Adapters),
    ("governance", Layer::UseCases),
    ("otp", Layer::UseCases),
    ("audit", Layer::Audit),
    ("bot", Layer::Edges),
    ("web", Layer::Edges),
    ("jobs", Layer::Edges),
    ("state", Layer::Edges),
    ("error", Layer::Edges),
    ("doctor", Layer::Edges),
    ("manifest", Layer::Edges),
    ("demo", Layer::Edges),
    ("app", Layer::Root),
    ("main", Layer::Root),
];

/// The layer of a module path such as `bot::connector::TokenProvider`.
pub fn layer_of(path: &str) -> Option<Layer> {
    LAYERS
        .iter()
        .filter(|(prefix, _)| {
            path == *prefix
                || path
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.starts_with("::"))
        })
        .max_by_key(|(prefix, _)| prefix.len())
        .map(|(_, layer)| *layer)
}

/// The `Store` trait methods (src/store/mod.rs) that only read. Every other method of those
/// traits writes, and the edges (`bot/`, `web/`) may not call it: what the bot and the web change
/// goes through a use case (#16). A new store method counts as a write until it is listed here.
pub const STORE_READS: &[&str] = &[
    // UserStore
    "user_by_id",
    "user_by_aad_object_id",
    "user_by_email",
    "users_with_role",
    "count_users",
    "user_time_zone",
    "turn_sender",
    "turn_senders",
    // VaultStore
    "folder_by_id",
    "list_folders",
    "folder_permissions",
    "record_by_id",
    "record_by_uid",
    "list_records",
    "records_by_title_prefix",
    // GovernanceStore
    "active_policies",
    "governed_resource_for_record",
    "governed_resource_by_id",
    "authority_by_id",
    "active_authorities",
    "authority_history",
    "authority_history_for_record",
    "approval_channel",
    // PermissionStore
    "cached_permissions",
    // RequestStore
    "request_by_id",
    "requests_for_requester",
    "requests_in_status",
    // LeaseStore
    "approvals_for_request",
    "issuances_for_request",
    "outstanding_issuances",
    "outstanding_issuances_for",
    "unremovable_shares",
    "last_job_runs",
    // ReportStore
    "report_requests",
    "report_approvals",
    "report_issuances",
    "report_audit_events",
    "users_by_ids",
    "records_by_ids",
    // AuditStore
    "audit_events_after",
    "audit_events_for_request",
    "audit_head",
    "unlinked_events",
    "checkpoints_from",
    "last_checkpoint",
    "public_keys",
    "recent_probes",
    "traces_for_request",
    "trace_by_id",
    "traces_after",
    // ConversationStore
    "conversation",
    "personal_conversation",
    "sent_cards_for_request",
    "waiting_notices_for_user",
    "kept_notices_for_request",
    "channel_misses_for_request",
    // SecondFactorStore
    "phone_number",
    "totp_enrollment",
    "challenge_by_id",
    "last_code_sent_to",
    "wrong_codes_since",
    "factor_proof_by_id",
    "totp_invitation",
    "sms_credential_faults",
    // LocalShareStore
    "local_share",
    "local_shares",
    // ReviewStore
    "review_campaign",
    "review_campaigns",
    "access_review",
    "reviews_in_campaign",
    "open_reviews",
    "review_decisions",
    "decisions_in_campaign",
    "break_glass_awaiting_review",
    "leases_between",
    "governed_resources",
    "review_cards",
    // HealthStore
    "ping",
    "migration_state",
];

/// Use-case methods that share a name with a writing store method: a call to one of these is a
/// store write only on a receiver named `store` (`GovernanceAdmin::revoke_authority` is the
/// audited use case over `GovernanceStore::revoke_authority`).
pub const USE_CASE_HOMONYMS: &[&str] = &["revoke_authority"];

/// The edges the store-write check covers (folders below `src/`).
pub const EDGES_THAT_NEVER_WRITE: &[&str] = &["bot", "web"];

/// The names of every method of the `Store` traits, read from the source of `store/mod.rs`.
pub fn store_methods(store_source: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut in_trait = false;
    for line in code_of(store_source).lines() {
        if line.starts_with("pub trait ") {
            in_trait = true;
        } else if line.starts_with('}') {
            in_trait = false;
        } else if in_trait && let Some(rest) = line.trim_start().strip_prefix("async fn ") {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            names.push(name);
        }
    }
    names
}

/// One `crate::…` path in a source file: where it is and what it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrateRef {
    pub line: usize,
    pub path: String,
}

/// `source` without comments and without everything from a `#[cfg(test)]` module on (tests may
/// use fixtures from any layer, and may write the store), line numbers kept.
pub fn code_of(source: &str) -> String {
    let mut code = String::new();
    let mut lines = source.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]")
            && lines
                .peek()
                .is_some_and(|next| next.trim_start().starts_with("mod "))
        {
            break;
        }
        let without_comment = match line.find("//") {
            Some(i) if !line[..i].contains('"') => &line[..i],
            _ => line,
        };
        code.push_str(if trimmed.starts_with("//") {
            ""
        } else {
            without_comment
        });
        code.push('\n');
    }
    code
}

/// Every call `.name(` in `source` (outside comments and `#[cfg(test)]` modules) of a method in
/// `names`, whitespace and line breaks allowed after the dot: (line, method, receiver), the
/// receiver being the last identifier before the dot (`store` in `state.store.x(`).
pub fn method_calls<'a>(source: &str, names: &[&'a str]) -> Vec<(usize, &'a str, String)> {
    let code = code_of(source);
    let mut calls = Vec::new();
    for (i, _) in code.match_indices('.') {
        let rest = code[i + 1..].trim_start();
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let Some(found) = names.iter().find(|n| **n == name) else {
            continue;
        };
        let after = rest[name.len()..].trim_start();
        if !(after.starts_with('(') || after.starts_with("::<")) {
            continue;
        }
        let before = code[..i].trim_end();
        let receiver: String = before
            .chars()
            .rev()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let at = i + 1 + (code[i + 1..].len() - rest.len());
        calls.push((code[..at].matches('\n').count() + 1, *found, receiver));
    }
    calls
}

/// Every `crate::` path in `source` outside comments and `#[cfg(test)]` modules (tests may use
/// fixtures from any layer), grouped imports (`crate::{a, b::c}`) expanded.
pub fn crate_refs(source: &str) -> Vec<CrateRef> {
    let code = code_of(source);
    let bytes = code.as_bytes();
    let line_at = |i: usize| code[..i].matches('\n').count() + 1;
    let ident_at = |i: usize| -> String {
        code[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
            .collect::<String>()
            .trim_end_matches(':')
            .to_string()
    };
    let mut refs = Vec::new();
    let mut from = 0;
    while let Some(found) = code[from..].find("crate::") {
        let start = from + found;
        from = start + "crate::".len();
        // `passkey_crate::x` or `$crate::` is not ours.
        if start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_') {
            continue;
        }
        if bytes.get(from) == Some(&b'{') {
            // A group: the first path of each item at depth 1.
            let mut depth = 0;
            let mut expect_item = true;
            let mut i = from;
            while i < bytes.len() {
                match bytes[i] {
                    b'{' => {
                        depth += 1;
                        expect_item = depth == 1;
                    }
                    b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    b',' if depth == 1 => expect_item = true,
                    c if expect_item && depth == 1 && (c.is_ascii_alphabetic() || c == b'_') => {
                        let path = ident_at(i);
                        i += path.len().max(1) - 1;
                        refs.push(CrateRef {
                            line: line_at(i),
                            path,
                        });
                        expect_item = false;
                    }
                    _ => {}
                }
                i += 1;
            }
            from = i;
        } else {
            let path = ident_at(from);
            if !path.is_empty() {
                refs.push(CrateRef {
                    line: line_at(start),
                    path,
                });
            }
        }
    }
    refs
}

/// The module path of a file below `src/`: `bot/connector.rs` → `bot::connector`,
/// `audit/mod.rs` → `audit`, `lib.rs` → `` (the crate root).
pub fn module_of(file: &str) -> String {
    let file = file.trim_end_matches(".rs");
    let file = file.strip_suffix("/mod").unwrap_or(file);
    if file == "lib" {
        return String::new();
    }
    file.replace('/', "::")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// The CI check (#16.1): no module imports a layer above its own, and every module has a layer.
    #[test]
    fn every_import_points_down_or_sideways() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        sources(&src, &mut files);
        files.sort();
        let mut problems = Vec::new();
        for file in &files {
            let relative = file
                .strip_prefix(&src)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            let module = module_of(&relative);
            if module.is_empty() {
                continue; // lib.rs declares the modules
            }
            let Some(own) = layer_of(&module) else {
                problems.push(format!(
                    "src/{relative}: module `{module}` has no layer in src/layers.rs LAYERS"
                ));
                continue;
            };
            let source = std::fs::read_to_string(file).unwrap();
            for r in crate_refs(&source) {
                match layer_of(&r.path) {
                    Some(target) if target > own => problems.push(format!(
                        "src/{relative}:{}: `{module}` ({own:?}) imports `crate::{}` ({target:?}), a layer above",
                        r.line, r.path
                    )),
                    Some(_) => {}
                    None => problems.push(format!(
                        "src/{relative}:{}: `crate::{}` has no layer in src/layers.rs LAYERS",
                        r.line, r.path
                    )),
                }
            }
        }
        assert!(
            problems.is_empty(),
            "imports that point up a layer (see docs/ARCHITECTURE.md \"## Shape\"):\n{}",
            problems.join("\n")
        );
    }

    /// The edge-write check (#16): no file under `src/bot` or `src/web` calls a `Store` method
    /// that writes (anything not in `STORE_READS`), `append_audit` included. Edges change things
    /// through use cases (`governance::*`, `otp`), which decide what is audited.
    #[test]
    fn edges_never_write_the_store() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let methods = store_methods(&std::fs::read_to_string(src.join("store/mod.rs")).unwrap());
        for read in STORE_READS {
            assert!(
                methods.iter().any(|m| m == read),
                "STORE_READS names `{read}`, which no Store trait has"
            );
        }
        let writes: Vec<&str> = methods
            .iter()
            .map(String::as_str)
            .filter(|m| !STORE_READS.contains(m))
            .collect();
        assert!(writes.contains(&"append_audit") && writes.contains(&"upsert_conversation"));
        let mut problems = Vec::new();
        for edge in EDGES_THAT_NEVER_WRITE {
            let mut files = Vec::new();
            sources(&src.join(edge), &mut files);
            files.sort();
            for file in &files {
                let relative = file
                    .strip_prefix(&src)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                let source = std::fs::read_to_string(file).unwrap();
                for (line, method, receiver) in method_calls(&source, &writes) {
                    if USE_CASE_HOMONYMS.contains(&method) && !receiver.ends_with("store") {
                        continue;
                    }
                    problems.push(format!(
                        "src/{relative}:{line}: `{method}` writes the store"
                    ));
                }
            }
        }
        assert!(
            problems.is_empty(),
            "edges write the store; go through a use case (see docs/ARCHITECTURE.md \"## Shape\"):\n{}",
            problems.join("\n")
        );
    }

    #[test]
    fn finds_method_calls_across_lines_but_not_in_comments_or_tests() {
        let source = "fn f() {\n    state\n        .store\n        .upsert_user(&u)\n        .await;\n\
                      // store.append_audit(&e)\n\
                      let x = y.append_audit_batch(&e);\n\
                      s.append_audit (&e);\n}\n\
                      #[cfg(test)]\nmod tests { fn g() { store.upsert_user(&u); } }\n";
        let calls = method_calls(source, &["upsert_user", "append_audit"]);
        assert_eq!(
            calls,
            vec![
                (4, "upsert_user", "store".to_string()),
                (8, "append_audit", "s".to_string())
            ]
        );
    }

    #[test]
    fn finds_paths_in_uses_groups_and_expressions_but_not_comments_or_tests() {
        let source = "use crate::store::{A, B};\n\
                      use crate::{\n    bot::connector::X,\n    domain,\n};\n\
                      // crate::web is only mentioned\n\
                      fn f() { crate::otp::begin(); }\n\
                      #[cfg(test)]\nmod tests { use crate::app::App; }\n";
        let refs: Vec<(usize, String)> = crate_refs(source)
            .into_iter()
            .map(|r| (r.line, r.path))
            .collect();
        let expected: Vec<(usize, String)> = [
            (1, "store"),
            (3, "bot::connector::X"),
            (4, "domain"),
            (7, "otp::begin"),
        ]
        .into_iter()
        .map(|(line, path)| (line, path.to_string()))
        .collect();
        assert_eq!(refs, expected);
    }

    #[test]
    fn the_longest_prefix_decides_a_layer() {
        assert_eq!(layer_of("audit::signer::Signer"), Some(Layer::Adapters));
        assert_eq!(layer_of("audit::AuditTrail"), Some(Layer::Audit));
        assert_eq!(layer_of("auditor"), None);
        assert_eq!(
            layer_of("bot::connector::TokenProvider"),
            Some(Layer::Edges)
        );
        assert_eq!(module_of("governance/mod.rs"), "governance");
        assert_eq!(module_of("bot/connector.rs"), "bot::connector");
    }
}
