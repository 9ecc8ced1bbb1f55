//! The Teams app package: the filled-in manifest validates against the official v1.24 schema
//! (`tests/schemas/`, copied from the `@microsoft/app-manifest` package), the zip holds exactly the
//! three files with the right bytes and opens with standard tools, the icons have the sizes Teams
//! wants, and bad values are refused with nothing written — through the library and through
//! `passkey manifest pack`.

use passkey::bot::commands::{ParseError, parse};
use passkey::manifest::{
    COLOR_ICON, MANIFEST_VERSION, OUTLINE_ICON, PackError, Package, png_dimensions, zip,
};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

const APP_ID: &str = "6a0f3c52-94b1-4e7d-8c2a-1b5e9f0d7a34";
const DOMAIN: &str = "passkey.contoso.com";

fn schema() -> Value {
    let text = include_str!("../schemas/MicrosoftTeams.v1.24.schema.json");
    serde_json::from_str(text).expect("schema is JSON")
}

fn validator() -> jsonschema::Validator {
    // The schema has no remote references, and this build of jsonschema cannot fetch any.
    jsonschema::draft4::new(&schema()).expect("schema compiles as draft-04")
}

fn package() -> Package {
    Package::new(APP_ID, DOMAIN, "1.4.0").unwrap()
}

fn manifest() -> Value {
    serde_json::from_str(&package().manifest_json()).expect("manifest is JSON")
}

fn schema_errors(instance: &Value) -> Vec<String> {
    validator()
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

#[test]
fn the_manifest_validates_against_the_official_schema() {
    let m = manifest();
    let errors = schema_errors(&m);
    assert!(errors.is_empty(), "{errors:#?}");

    // draft-04 has no `const`, so the schema alone does not pin the version: check it here.
    assert_eq!(m["manifestVersion"], MANIFEST_VERSION);
    assert!(
        m["$schema"]
            .as_str()
            .unwrap()
            .contains(&format!("/v{MANIFEST_VERSION}/"))
    );
}

#[test]
fn the_validator_is_not_vacuous() {
    let mut m = manifest();
    m["accentColor"] = "blue".into();
    m["bots"][0]["botId"] = "not-a-guid".into();
    m["bots"][0]["commandLists"][0]["commands"][0]["title"] = "x".repeat(129).into();
    m["surprise"] = true.into();
    let errors = schema_errors(&m);
    assert_eq!(errors.len(), 4, "{errors:#?}");
}

#[test]
fn the_manifest_describes_the_bot() {
    let m = manifest();
    let bot = &m["bots"][0];
    assert_eq!(m["id"], APP_ID);
    assert_eq!(bot["botId"], APP_ID);
    assert_eq!(
        bot["scopes"],
        serde_json::json!(["personal", "team", "groupChat"])
    );
    assert_eq!(m["validDomains"], serde_json::json!([DOMAIN]));
    assert_eq!(m["webApplicationInfo"]["id"], APP_ID);
    assert_eq!(
        m["webApplicationInfo"]["resource"],
        format!("api://{DOMAIN}/{APP_ID}")
    );
    assert_eq!(m["icons"]["color"], "color.png");
    assert_eq!(m["icons"]["outline"], "outline.png");
    for url in ["websiteUrl", "privacyUrl", "termsOfUseUrl"] {
        let url = m["developer"][url].as_str().unwrap();
        assert!(url.starts_with(&format!("https://{DOMAIN}/")), "{url}");
    }

    // One command list per scope; each scope the bot has gets one.
    let lists = bot["commandLists"].as_array().unwrap();
    let mut scopes: Vec<&str> = lists
        .iter()
        .flat_map(|l| l["scopes"].as_array().unwrap())
        .map(|s| s.as_str().unwrap())
        .collect();
    scopes.sort_unstable();
    assert_eq!(scopes, ["groupChat", "personal", "team"]);

    for list in lists {
        let personal = list["scopes"][0] == "personal";
        let titles: Vec<&str> = list["commands"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["title"].as_str().unwrap())
            .collect();
        for expected in [
            "help",
            "request",
            "my requests",
            "pending",
            "approve",
            "deny",
            "release",
            "extend",
            "records",
            "status",
        ] {
            assert!(
                titles.contains(&expected),
                "{expected} missing from {titles:?}"
            );
        }
        // Admin diagnostics belong in a 1:1 chat, not in a channel or group chat.
        assert_eq!(titles.contains(&"admin"), personal, "{titles:?}");
        for command in list["commands"].as_array().unwrap() {
            let title = command["title"].as_str().unwrap();
            let description = command["description"].as_str().unwrap();
            // Every title is a command the bot knows (arguments may be missing, not the command).
            assert!(
                !matches!(
                    parse(title),
                    Err(ParseError::Unknown { .. } | ParseError::Empty)
                ),
                "`{title}` is not a command"
            );
            // Within the schema's limits, and within the tighter ones Teams long had (32 / 128),
            // so the command menu shows them whole.
            assert!(title.chars().count() <= 32, "{title}");
            assert!(description.chars().count() <= 128, "{description}");
        }
    }
}

#[test]
fn the_zip_holds_exactly_the_three_files() {
    let p = package();
    let entries = zip::read_stored(&p.zip()).unwrap();
    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["manifest.json", "color.png", "outline.png"]);
    assert_eq!(entries[0].data, p.manifest_json().as_bytes());
    assert_eq!(entries[1].data, COLOR_ICON);
    assert_eq!(entries[2].data, OUTLINE_ICON);
    assert_eq!(COLOR_ICON, std::fs::read("manifest/color.png").unwrap());
    assert_eq!(OUTLINE_ICON, std::fs::read("manifest/outline.png").unwrap());
}

/// Runs a standard tool if the machine has it; `None` when it does not.
fn run_if_present(program: &str, args: &[&str]) -> Option<Output> {
    match Command::new(program).args(args).output() {
        Ok(out) => Some(out),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => panic!("{program}: {e}"),
    }
}

#[test]
fn standard_tools_accept_the_zip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("passkey.zip");
    package().write(&path).unwrap();
    let path = path.to_str().unwrap();
    let mut checked = 0;

    if let Some(out) = run_if_present("unzip", &["-t", path]) {
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}");
        assert!(stdout.contains("No errors detected"), "{stdout}");
        checked += 1;
    }
    let script = "import sys, zipfile\n\
        z = zipfile.ZipFile(sys.argv[1])\n\
        assert z.testzip() is None\n\
        print(','.join(i.filename + ':' + str(i.file_size) for i in z.infolist()))";
    if let Some(out) = run_if_present("python3", &["-c", script, path]) {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let expected = format!(
            "manifest.json:{},color.png:{},outline.png:{}",
            package().manifest_json().len(),
            COLOR_ICON.len(),
            OUTLINE_ICON.len()
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), expected);
        checked += 1;
    }
    if checked == 0 {
        eprintln!(
            "SKIPPED: neither unzip nor python3 is installed; the zip was checked by zip::read_stored only"
        );
    }
}

/// Pixel data of an 8-bit RGBA, non-interlaced PNG, undoing the per-row filters.
fn rgba_rows(png: &[u8]) -> Vec<Vec<u8>> {
    let (width, height) = png_dimensions(png).unwrap();
    assert_eq!(&png[24..29], [8, 6, 0, 0, 0], "8-bit RGBA, not interlaced");
    let mut at = 8;
    let mut idat = Vec::new();
    while at < png.len() {
        let len = u32::from_be_bytes(png[at..at + 4].try_into().unwrap()) as usize;
        let kind = &png[at + 4..at + 8];
        let body = &png[at + 4..at + 8 + len];
        let crc = u32::from_be_bytes(png[at + 8 + len..at + 12 + len].try_into().unwrap());
        assert_eq!(zip::crc32(body), crc, "chunk CRC");
        if kind == b"IDAT" {
            idat.extend_from_slice(&png[at + 8..at + 8 + len]);
        }
        at += 12 + len;
    }
    let raw = inflate(&idat);
    let stride = width as usize * 4;
    let mut rows: Vec<Vec<u8>> = Vec::new();
    for y in 0..height as usize {
        let line = &raw[y * (stride + 1)..(y + 1) * (stride + 1)];
        let filter = line[0];
        let mut row = line[1..].to_vec();
        for x in 0..stride {
            let a = if x >= 4 { row[x - 4] } else { 0 };
            let b = if y > 0 { rows[y - 1][x] } else { 0 };
            let c = if x >= 4 && y > 0 {
                rows[y - 1][x - 4]
            } else {
                0
            };
            row[x] = row[x].wrapping_add(match filter {
                0 => 0,
                1 => a,
                2 => b,
                3 => ((u16::from(a) + u16::from(b)) / 2) as u8,
                4 => {
                    let p = i16::from(a) + i16::from(b) - i16::from(c);
                    let (pa, pb, pc) = (
                        (p - i16::from(a)).abs(),
                        (p - i16::from(b)).abs(),
                        (p - i16::from(c)).abs(),
                    );
                    if pa <= pb && pa <= pc {
                        a
                    } else if pb <= pc {
                        b
                    } else {
                        c
                    }
                }
                f => panic!("filter {f}"),
            });
        }
        rows.push(row);
    }
    rows
}

/// The PNGs are zlib-compressed; decompress with Python's zlib when present (the crate has no
/// inflater and needs none), else return nothing and let the caller skip pixel checks.
fn inflate(zlib_data: &[u8]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("idat");
    std::fs::write(&input, zlib_data).unwrap();
    let script = "import sys, zlib\n\
        sys.stdout.buffer.write(zlib.decompress(open(sys.argv[1], 'rb').read()))";
    match run_if_present("python3", &["-c", script, input.to_str().unwrap()]) {
        Some(out) if out.status.success() => out.stdout,
        Some(out) => panic!("{}", String::from_utf8_lossy(&out.stderr)),
        None => Vec::new(),
    }
}

#[test]
fn the_icons_have_the_sizes_and_colours_teams_wants() {
    assert_eq!(png_dimensions(COLOR_ICON), Some((192, 192)));
    assert_eq!(png_dimensions(OUTLINE_ICON), Some((32, 32)));

    if run_if_present("python3", &["-c", "import zlib"]).is_none() {
        eprintln!("SKIPPED pixel checks: python3 is not installed");
        return;
    }
    // Outline: every visible pixel is white; the corners are transparent; a glyph is drawn
    // (neither empty nor a filled square).
    let rows = rgba_rows(OUTLINE_ICON);
    let mut opaque = 0;
    for row in &rows {
        for px in row.chunks(4) {
            if px[3] > 0 {
                assert_eq!(&px[..3], [255, 255, 255], "outline pixels are white");
                opaque += 1;
            }
        }
    }
    assert_eq!(rows[0][3], 0, "corner is transparent");
    assert!(
        (100..32 * 32 / 2).contains(&opaque),
        "{opaque} visible pixels"
    );

    // Colour: not one flat colour — a white glyph on the accent colour.
    let rows = rgba_rows(COLOR_ICON);
    let centre = &rows[96][96 * 4..96 * 4 + 4];
    let accent = hex_rgb(manifest()["accentColor"].as_str().unwrap());
    let edge = &rows[96][4 * 4..4 * 4 + 4];
    assert_eq!(&edge[..3], accent, "the background is the accent colour");
    assert_eq!(
        centre,
        [255, 255, 255, 255],
        "the key's shaft crosses the centre"
    );
    let white = rows
        .iter()
        .flat_map(|r| r.chunks(4))
        .filter(|px| px == &[255, 255, 255, 255])
        .count();
    assert!(white > 2000, "{white} white pixels");
}

fn hex_rgb(hex: &str) -> [u8; 3] {
    let n = u32::from_str_radix(hex.trim_start_matches('#'), 16).unwrap();
    [(n >> 16) as u8, (n >> 8) as u8, n as u8]
}

#[test]
fn bad_values_are_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("passkey.zip");
    for (app_id, domain) in [
        ("not-a-guid", DOMAIN),
        ("", DOMAIN),
        (APP_ID, "https://passkey.contoso.com"),
        (APP_ID, "localhost"),
        (APP_ID, "10.0.0.7"),
        (APP_ID, "passkey.contoso.com:443"),
    ] {
        let err = Package::new(app_id, domain, "1.0.0")
            .and_then(|p| p.write(&out))
            .unwrap_err();
        assert!(err.is_refusal(), "{err}");
        assert!(
            matches!(err, PackError::BadAppId(_) | PackError::BadDomain { .. }),
            "{err}"
        );
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn an_unwritable_place_is_an_error_not_a_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let err = package()
        .write(&dir.path().join("missing/passkey.zip"))
        .unwrap_err();
    assert!(!err.is_refusal(), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// Runs the binary in `dir` with only the settings this test gives it.
fn passkey(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_passkey"));
    command.current_dir(dir).args(args);
    for (name, _) in std::env::vars() {
        if name.starts_with("PASSKEY_") || name == "DATABASE_URL" || name == "RUST_LOG" {
            command.env_remove(name);
        }
    }
    command
        .env("PASSKEY_DATA_DIR", dir.join("data"))
        .env("PASSKEY_LOG__FILTER", "warn")
        .envs(env.iter().copied());
    command.output().expect("run passkey")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn manifest_pack_on_the_command_line() {
    let dir = tempfile::tempdir().unwrap();

    // No app id configured: exit 1, the reason, nothing written.
    let out = passkey(dir.path(), &["manifest", "pack", "--out", "p.zip"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("no app id"),
        "{}",
        text(&out.stderr)
    );
    assert!(!dir.path().join("p.zip").exists());

    // An app id that is not a GUID.
    let out = passkey(
        dir.path(),
        &[
            "manifest",
            "pack",
            "--out",
            "p.zip",
            "--app-id",
            "passkey-bot",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("is not a GUID"),
        "{}",
        text(&out.stderr)
    );

    // The app id from the configuration, but public_url left at the loopback default.
    let configured = [("PASSKEY_BOT__APP_ID", APP_ID)];
    let out = passkey(
        dir.path(),
        &["manifest", "pack", "--out", "p.zip"],
        &configured,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("public_url"),
        "{}",
        text(&out.stderr)
    );

    // A domain with a scheme.
    let out = passkey(
        dir.path(),
        &[
            "manifest",
            "pack",
            "--out",
            "p.zip",
            "--domain",
            "https://x.contoso.com",
        ],
        &configured,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("without https://"),
        "{}",
        text(&out.stderr)
    );
    assert!(!dir.path().join("p.zip").exists());
    assert!(out.stdout.is_empty());

    // Everything from the configuration.
    let configured = [
        ("PASSKEY_BOT__APP_ID", APP_ID),
        ("PASSKEY_PUBLIC_URL", "https://passkey.contoso.com"),
    ];
    let out = passkey(
        dir.path(),
        &["manifest", "pack", "--out", "p.zip"],
        &configured,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("wrote p.zip"),
        "{}",
        text(&out.stdout)
    );
    let bytes = std::fs::read(dir.path().join("p.zip")).unwrap();
    let entries = zip::read_stored(&bytes).unwrap();
    let m: Value = serde_json::from_slice(&entries[0].data).unwrap();
    assert_eq!(m["id"], APP_ID);
    assert_eq!(m["validDomains"][0], DOMAIN);
    assert_eq!(m["version"], passkey::VERSION);
    assert!(schema_errors(&m).is_empty());

    // Flags win over the configuration; the file is replaced.
    let other = "00000000-0000-4000-8000-000000000001";
    let out = passkey(
        dir.path(),
        &[
            "manifest",
            "pack",
            "--out",
            "p.zip",
            "--app-id",
            other,
            "--domain",
            "bot.fabrikam.io",
            "--app-version",
            "2.1.0",
        ],
        &configured,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let bytes = std::fs::read(dir.path().join("p.zip")).unwrap();
    assert_eq!(
        bytes,
        Package::new(other, "bot.fabrikam.io", "2.1.0")
            .unwrap()
            .zip()
    );
    // Only the package: no temporary file left beside it, no database touched.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["p.zip"]);
}
