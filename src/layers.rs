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
    ("crypto", Layer::Adapters),
    ("config", Layer::Adapters),
    ("telemetry", Layer::Adapters),
    ("private_fs", Layer::Adapters),
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

/// One `crate::…` path in a source file: where it is and what it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrateRef {
    pub line: usize,
    pub path: String,
}

/// Every `crate::` path in `source` outside comments and `#[cfg(test)]` modules (tests may use
/// fixtures from any layer), grouped imports (`crate::{a, b::c}`) expanded.
pub fn crate_refs(source: &str) -> Vec<CrateRef> {
    // Drop comments and everything from a `#[cfg(test)]` module on, keeping line numbers.
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
