//! The Teams app package: `manifest/manifest.json` (a template) with the bot's app id, the public
//! domain and the app version filled in, zipped with the two icons — what an admin uploads to
//! Teams. `passkey manifest pack` is the command-line face of [`Package::write`].
//!
//! Nothing here talks to the network or the database. Every value is checked before anything is
//! written: an app id that is not a GUID or a domain that is not a plain DNS name is refused and no
//! file is created. The values are substituted into the template only after that check, and the
//! checks admit no character that would need escaping in JSON.

use crate::config::Settings;
use std::path::{Path, PathBuf};

/// The manifest schema version the template declares.
pub const MANIFEST_VERSION: &str = "1.24";
/// The template, with `{{APP_ID}}`, `{{DOMAIN}}` and `{{VERSION}}` placeholders.
pub const TEMPLATE: &str = include_str!("../manifest/manifest.json");
/// Full-colour icon, 192×192.
pub const COLOR_ICON: &[u8] = include_bytes!("../manifest/color.png");
/// Outline icon, 32×32, white on transparent.
pub const OUTLINE_ICON: &[u8] = include_bytes!("../manifest/outline.png");

const APP_ID_PLACEHOLDER: &str = "{{APP_ID}}";
const DOMAIN_PLACEHOLDER: &str = "{{DOMAIN}}";
const VERSION_PLACEHOLDER: &str = "{{VERSION}}";

/// Why a package was not made.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("no app id: set bot.app_id (PASSKEY_BOT__APP_ID) or pass --app-id")]
    MissingAppId,
    #[error(
        "app id `{0}` is not a GUID (the bot's Microsoft App ID looks like 00000000-0000-0000-0000-000000000000)"
    )]
    BadAppId(String),
    #[error(
        "no domain: public_url is not set (it defaults to the local listen address); set public_url \
         (PASSKEY_PUBLIC_URL) to the bot's https address or pass --domain"
    )]
    MissingDomain,
    #[error("public_url `{0}` is not a URL with a host; fix it or pass --domain")]
    BadPublicUrl(String),
    #[error(
        "domain `{domain}` is not a plain host name: {reason} (for example passkey.contoso.com)"
    )]
    BadDomain {
        domain: String,
        reason: &'static str,
    },
    #[error(
        "app version `{0}` is not MAJOR.MINOR.PATCH (digits only, like 1.4.0); pass --app-version"
    )]
    BadVersion(String),
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl PackError {
    /// True when the input was refused (as opposed to the file system failing).
    pub fn is_refusal(&self) -> bool {
        !matches!(self, PackError::Write { .. })
    }
}

/// Checked values for one package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    app_id: String,
    domain: String,
    version: String,
}

impl Package {
    /// Checks each value; the app id and the domain are lower-cased.
    pub fn new(app_id: &str, domain: &str, version: &str) -> Result<Self, PackError> {
        Ok(Package {
            app_id: check_app_id(app_id)?,
            domain: check_domain(domain)?,
            version: check_version(version)?,
        })
    }

    /// Values given on the command line win; otherwise the app id is `bot.app_id`, the domain the
    /// host of `public_url` and the version the crate's.
    pub fn from_settings(
        settings: &Settings,
        app_id: Option<&str>,
        domain: Option<&str>,
        version: Option<&str>,
    ) -> Result<Self, PackError> {
        let app_id = match app_id.or(settings.bot.app_id.as_deref()) {
            Some(id) if !id.trim().is_empty() => check_app_id(id)?,
            _ => return Err(PackError::MissingAppId),
        };
        let domain = match domain {
            Some(d) => d.to_string(),
            None => domain_of_public_url(settings.public_url.as_deref())?,
        };
        Package::new(&app_id, &domain, version.unwrap_or(crate::VERSION))
    }

    pub fn app_id(&self) -> &str {
        &self.app_id
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    /// The filled-in manifest.
    pub fn manifest_json(&self) -> String {
        TEMPLATE
            .replace(APP_ID_PLACEHOLDER, &self.app_id)
            .replace(DOMAIN_PLACEHOLDER, &self.domain)
            .replace(VERSION_PLACEHOLDER, &self.version)
    }

    /// The files of the package, in the order they are zipped.
    pub fn files(&self) -> Vec<(&'static str, Vec<u8>)> {
        vec![
            ("manifest.json", self.manifest_json().into_bytes()),
            ("color.png", COLOR_ICON.to_vec()),
            ("outline.png", OUTLINE_ICON.to_vec()),
        ]
    }

    /// The package as zip bytes (stored, fixed timestamps: the same values give the same bytes).
    pub fn zip(&self) -> Vec<u8> {
        let files = self.files();
        let entries: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (*n, b.as_slice())).collect();
        zip::stored(&entries)
    }

    /// Writes the zip to `out`: first to a temporary file beside it, then renamed over it, so a
    /// failure leaves no half-written package behind.
    pub fn write(&self, out: &Path) -> Result<(), PackError> {
        let bytes = self.zip();
        let write_err = |source| PackError::Write {
            path: out.to_path_buf(),
            source,
        };
        let name = out
            .file_name()
            .ok_or_else(|| write_err(std::io::Error::other("not a file name")))?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".{}.tmp", std::process::id()));
        let tmp = out.with_file_name(tmp_name);
        if let Err(e) = std::fs::write(&tmp, &bytes) {
            let _ = std::fs::remove_file(&tmp);
            return Err(write_err(e));
        }
        std::fs::rename(&tmp, out).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            write_err(e)
        })
    }
}

/// The host of `public_url`, checked as a domain.
fn domain_of_public_url(public_url: Option<&str>) -> Result<String, PackError> {
    let Some(url) = public_url.filter(|u| !u.trim().is_empty()) else {
        return Err(PackError::MissingDomain);
    };
    let parsed =
        reqwest::Url::parse(url.trim()).map_err(|_| PackError::BadPublicUrl(url.into()))?;
    match parsed.host_str() {
        Some(host) if host.starts_with('[') || host.parse::<std::net::IpAddr>().is_ok() => {
            Err(PackError::BadDomain {
                domain: host.to_string(),
                reason: "public_url names an IP address; Teams needs a DNS name (set public_url or pass --domain)",
            })
        }
        Some(host) if !host.is_empty() => Ok(host.to_string()),
        _ => Err(PackError::BadPublicUrl(url.into())),
    }
}

/// A GUID in its usual 8-4-4-4-12 hexadecimal form, lower-cased.
pub fn check_app_id(app_id: &str) -> Result<String, PackError> {
    let id = app_id.trim();
    let groups: Vec<&str> = id.split('-').collect();
    let shape_ok = groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.bytes().all(|b| b.is_ascii_hexdigit()));
    if shape_ok {
        Ok(id.to_ascii_lowercase())
    } else {
        Err(PackError::BadAppId(app_id.into()))
    }
}

/// A DNS name of at least two labels — letters, digits and inner hyphens — with no scheme, port,
/// path or wildcard, lower-cased.
pub fn check_domain(domain: &str) -> Result<String, PackError> {
    let bad = |reason| PackError::BadDomain {
        domain: domain.into(),
        reason,
    };
    let d = domain.trim().to_ascii_lowercase();
    if d.is_empty() {
        return Err(bad("it is empty"));
    }
    if d.contains("://") {
        return Err(bad("give the host alone, without https://"));
    }
    if d.contains('/') {
        return Err(bad("give the host alone, without a path"));
    }
    if d.contains(':') {
        return Err(bad("give the host alone, without a port"));
    }
    if d.contains('*') {
        return Err(bad("wildcards are not allowed"));
    }
    if !d
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    {
        return Err(bad("only letters, digits, hyphens and dots are allowed"));
    }
    if d.len() > 253 {
        return Err(bad("it is longer than 253 characters"));
    }
    let labels: Vec<&str> = d.split('.').collect();
    if labels.iter().any(|l| l.is_empty()) {
        return Err(bad(
            "it has an empty label (a leading, trailing or double dot)",
        ));
    }
    if labels
        .iter()
        .any(|l| l.len() > 63 || l.starts_with('-') || l.ends_with('-'))
    {
        return Err(bad(
            "each label must be 1 to 63 characters and not start or end with a hyphen",
        ));
    }
    if labels.len() < 2 {
        return Err(bad(
            "Teams needs a full DNS name with a dot, not a single label",
        ));
    }
    if labels
        .last()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(bad("an IP address; Teams needs a DNS name"));
    }
    Ok(d)
}

/// `MAJOR.MINOR.PATCH`, digits only, no leading zeros: what the manifest schema accepts.
pub fn check_version(version: &str) -> Result<String, PackError> {
    let v = version.trim();
    let parts: Vec<&str> = v.split('.').collect();
    let ok = parts.len() == 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.len() <= 9
                && p.bytes().all(|b| b.is_ascii_digit())
                && (p.len() == 1 || !p.starts_with('0'))
        });
    if ok {
        Ok(v.to_string())
    } else {
        Err(PackError::BadVersion(version.into()))
    }
}

/// A minimal zip writer: the STORED method (no compression), which is all an app package of three
/// small files needs. Format: PKWARE APPNOTE 6.3, sections 4.3.7 (local header), 4.3.12 (central
/// directory) and 4.3.16 (end of central directory).
pub mod zip {
    /// 1980-01-01 00:00:00 in MS-DOS form (the earliest zip time), so output is reproducible.
    const DOS_TIME: u16 = 0;
    const DOS_DATE: u16 = (1 << 5) | 1;
    /// 1.0: stored entries need nothing newer.
    const VERSION_NEEDED: u16 = 10;
    /// Unix (3) in the high byte, spec 2.0 in the low byte, so the mode in the external
    /// attributes is read.
    const VERSION_MADE_BY: u16 = (3 << 8) | 20;
    /// A regular file, rw-r--r--.
    const EXTERNAL_ATTRIBUTES: u32 = 0o100644 << 16;

    const CRC_TABLE: [u32; 256] = crc_table();

    const fn crc_table() -> [u32; 256] {
        let mut table = [0u32; 256];
        let mut n = 0;
        while n < 256 {
            let mut c = n as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[n] = c;
            n += 1;
        }
        table
    }

    /// CRC-32 (ISO-HDLC, the one zip and PNG use).
    pub fn crc32(data: &[u8]) -> u32 {
        !data.iter().fold(!0u32, |c, &b| {
            CRC_TABLE[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8)
        })
    }

    fn u16le(out: &mut Vec<u8>, v: u16) {
        out.extend_from_slice(&v.to_le_bytes());
    }

    fn u32le(out: &mut Vec<u8>, v: u32) {
        out.extend_from_slice(&v.to_le_bytes());
    }

    fn small<T: TryFrom<usize>>(n: usize) -> T {
        T::try_from(n)
            .ok()
            .expect("zip entries and names stay far below the zip32 limits")
    }

    /// A zip archive holding `entries` (name, bytes) at its root, in order, uncompressed. Names
    /// are ASCII paths with `/` separators.
    pub fn stored(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut central = Vec::new();
        for (name, data) in entries {
            let offset: u32 = small(out.len());
            let crc = crc32(data);
            let size: u32 = small(data.len());
            let name_len: u16 = small(name.len());

            u32le(&mut out, 0x0403_4B50);
            u16le(&mut out, VERSION_NEEDED);
            u16le(&mut out, 0); // flags
            u16le(&mut out, 0); // method: stored
            u16le(&mut out, DOS_TIME);
            u16le(&mut out, DOS_DATE);
            u32le(&mut out, crc);
            u32le(&mut out, size); // compressed size
            u32le(&mut out, size); // uncompressed size
            u16le(&mut out, name_len);
            u16le(&mut out, 0); // extra field length
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(data);

            u32le(&mut central, 0x0201_4B50);
            u16le(&mut central, VERSION_MADE_BY);
            u16le(&mut central, VERSION_NEEDED);
            u16le(&mut central, 0); // flags
            u16le(&mut central, 0); // method
            u16le(&mut central, DOS_TIME);
            u16le(&mut central, DOS_DATE);
            u32le(&mut central, crc);
            u32le(&mut central, size);
            u32le(&mut central, size);
            u16le(&mut central, name_len);
            u16le(&mut central, 0); // extra field length
            u16le(&mut central, 0); // comment length
            u16le(&mut central, 0); // disk number start
            u16le(&mut central, 0); // internal attributes
            u32le(&mut central, EXTERNAL_ATTRIBUTES);
            u32le(&mut central, offset);
            central.extend_from_slice(name.as_bytes());
        }
        let central_offset: u32 = small(out.len());
        let central_size: u32 = small(central.len());
        let count: u16 = small(entries.len());
        out.extend_from_slice(&central);
        u32le(&mut out, 0x0605_4B50);
        u16le(&mut out, 0); // this disk
        u16le(&mut out, 0); // disk with the central directory
        u16le(&mut out, count);
        u16le(&mut out, count);
        u32le(&mut out, central_size);
        u32le(&mut out, central_offset);
        u16le(&mut out, 0); // comment length
        out
    }

    /// One entry read back by [`read_stored`].
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Entry {
        pub name: String,
        pub data: Vec<u8>,
    }

    /// Reads an archive written by [`stored`] through its central directory, checking each
    /// local header and CRC. A reader for tests and for `passkey` itself, not for zips in general
    /// (no compression, no zip64, no encryption).
    pub fn read_stored(zip: &[u8]) -> Result<Vec<Entry>, String> {
        let u16_at = |at: usize| -> Result<u16, String> {
            zip.get(at..at + 2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]))
                .ok_or_else(|| format!("truncated at {at}"))
        };
        let u32_at = |at: usize| -> Result<u32, String> {
            zip.get(at..at + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or_else(|| format!("truncated at {at}"))
        };
        let eocd = zip
            .len()
            .checked_sub(22)
            .ok_or("shorter than an end record")?;
        if u32_at(eocd)? != 0x0605_4B50 {
            return Err("no end of central directory record at the end".into());
        }
        let count = usize::from(u16_at(eocd + 10)?);
        let central_size = u32_at(eocd + 12)? as usize;
        let mut at = u32_at(eocd + 16)? as usize;
        if at + central_size != eocd {
            return Err("central directory does not end where the end record starts".into());
        }
        let mut entries = Vec::with_capacity(count);
        for _ in 0..count {
            if u32_at(at)? != 0x0201_4B50 {
                return Err(format!("no central directory header at {at}"));
            }
            let method = u16_at(at + 10)?;
            let crc = u32_at(at + 16)?;
            let compressed = u32_at(at + 20)? as usize;
            let size = u32_at(at + 24)? as usize;
            let name_len = usize::from(u16_at(at + 28)?);
            let skip = usize::from(u16_at(at + 30)?) + usize::from(u16_at(at + 32)?);
            let local = u32_at(at + 42)? as usize;
            let name = zip
                .get(at + 46..at + 46 + name_len)
                .ok_or("truncated name")?;
            let name = String::from_utf8(name.to_vec()).map_err(|_| "name is not UTF-8")?;
            if method != 0 || compressed != size {
                return Err(format!("{name}: not stored"));
            }
            if u32_at(local)? != 0x0403_4B50 {
                return Err(format!("{name}: no local header at {local}"));
            }
            let local_name_len = usize::from(u16_at(local + 26)?);
            let local_extra = usize::from(u16_at(local + 28)?);
            if zip.get(local + 30..local + 30 + local_name_len) != Some(name.as_bytes()) {
                return Err(format!("{name}: local header names another file"));
            }
            if u32_at(local + 14)? != crc || u32_at(local + 22)? as usize != size {
                return Err(format!("{name}: local header disagrees with the directory"));
            }
            let start = local + 30 + local_name_len + local_extra;
            let data = zip
                .get(start..start + size)
                .ok_or_else(|| format!("{name}: truncated data"))?;
            if crc32(data) != crc {
                return Err(format!("{name}: CRC mismatch"));
            }
            entries.push(Entry {
                name,
                data: data.to_vec(),
            });
            at += 46 + name_len + skip;
        }
        Ok(entries)
    }
}

/// Width and height from a PNG's IHDR chunk, after checking the signature.
pub fn png_dimensions(png: &[u8]) -> Option<(u32, u32)> {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    if png.get(..8)? != SIGNATURE || png.get(12..16)? != b"IHDR" {
        return None;
    }
    let be = |at: usize| {
        png.get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    Some((be(16)?, be(20)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP_ID: &str = "6A0F3C52-94B1-4E7D-8C2A-1B5E9F0D7A34";

    #[test]
    fn crc32_matches_the_check_value() {
        assert_eq!(zip::crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(zip::crc32(b""), 0);
    }

    #[test]
    fn zip_round_trips_through_its_reader() {
        let zipped = zip::stored(&[("a.txt", b"hello"), ("b/c.bin", &[0, 1, 2, 255])]);
        let entries = zip::read_stored(&zipped).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].name, "a.txt");
        assert_eq!(entries[0].data, b"hello");
        assert_eq!(entries[1].name, "b/c.bin");
        assert_eq!(entries[1].data, [0, 1, 2, 255]);

        let mut corrupt = zipped.clone();
        corrupt[30 + 5] ^= 1; // first byte of a.txt's data
        assert!(zip::read_stored(&corrupt).unwrap_err().contains("CRC"));
    }

    #[test]
    fn the_same_values_give_the_same_bytes() {
        let p = Package::new(APP_ID, "passkey.contoso.com", "1.2.3").unwrap();
        assert_eq!(p.zip(), p.zip());
    }

    #[test]
    fn values_are_filled_in_lower_case() {
        let p = Package::new(APP_ID, "Passkey.Contoso.COM", "1.2.3").unwrap();
        let json = p.manifest_json();
        assert!(!json.contains("{{"), "{json}");
        let m: serde_json::Value = serde_json::from_str(&json).unwrap();
        let id = APP_ID.to_ascii_lowercase();
        assert_eq!(m["id"], id.as_str());
        assert_eq!(m["bots"][0]["botId"], id.as_str());
        assert_eq!(m["webApplicationInfo"]["id"], id.as_str());
        assert_eq!(
            m["webApplicationInfo"]["resource"],
            format!("api://passkey.contoso.com/{id}")
        );
        assert_eq!(m["validDomains"][0], "passkey.contoso.com");
        assert_eq!(m["version"], "1.2.3");
        assert_eq!(m["manifestVersion"], MANIFEST_VERSION);
    }

    #[test]
    fn app_ids_must_be_guids() {
        for bad in [
            "",
            "not-a-guid",
            "6a0f3c5294b14e7d8c2a1b5e9f0d7a34",
            "{6a0f3c52-94b1-4e7d-8c2a-1b5e9f0d7a34}",
            "6a0f3c52-94b1-4e7d-8c2a-1b5e9f0d7a3g",
            "6a0f3c52-94b1-4e7d-8c2a-1b5e9f0d7a345",
            "6a0f3c52-94b1-4e7d-8c2a-1b5e9f0d7a34\", \"x",
        ] {
            assert!(
                matches!(check_app_id(bad), Err(PackError::BadAppId(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn domains_must_be_plain_dns_names() {
        for good in ["passkey.contoso.com", "a-b.c9.io", "x.y", "abc.xn--p1ai"] {
            assert!(check_domain(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "https://passkey.contoso.com",
            "passkey.contoso.com/issue",
            "passkey.contoso.com:443",
            "*.contoso.com",
            "localhost",
            "127.0.0.1",
            "passkey..com",
            ".contoso.com",
            "contoso.com.",
            "-bad.com",
            "bad-.com",
            "pass key.com",
            "pässkey.com",
            "a\"b.com",
            &format!("{}.com", "a".repeat(64)),
        ] {
            assert!(
                matches!(check_domain(bad), Err(PackError::BadDomain { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn versions_are_three_numbers() {
        for good in ["0.1.0", "1.2.3", "10.0.20"] {
            assert!(check_version(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "1",
            "1.2",
            "1.2.3.4",
            "01.2.3",
            "1.2.3-beta",
            "v1.2.3",
            "1.2.x",
        ] {
            assert!(check_version(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn settings_supply_the_defaults() {
        let mut settings = Settings::default();
        assert!(matches!(
            Package::from_settings(&settings, None, None, None),
            Err(PackError::MissingAppId)
        ));
        settings.bot.app_id = Some(APP_ID.into());
        assert!(matches!(
            Package::from_settings(&settings, None, None, None),
            Err(PackError::MissingDomain)
        ));
        settings.public_url = Some("http://127.0.0.1:3978".into());
        assert!(matches!(
            Package::from_settings(&settings, None, None, None),
            Err(PackError::BadDomain { .. })
        ));
        settings.public_url = Some("https://Passkey.Contoso.com:8443/base/".into());
        let p = Package::from_settings(&settings, None, None, None).unwrap();
        assert_eq!(p.domain(), "passkey.contoso.com");
        assert_eq!(p.app_id(), APP_ID.to_ascii_lowercase());
        assert_eq!(p.version(), crate::VERSION);

        let other = "00000000-0000-0000-0000-000000000001";
        let p = Package::from_settings(
            &settings,
            Some(other),
            Some("bot.fabrikam.io"),
            Some("2.0.0"),
        )
        .unwrap();
        assert_eq!(
            (p.app_id(), p.domain(), p.version()),
            (other, "bot.fabrikam.io", "2.0.0")
        );
    }

    #[test]
    fn png_dimensions_reads_ihdr() {
        assert_eq!(png_dimensions(COLOR_ICON), Some((192, 192)));
        assert_eq!(png_dimensions(OUTLINE_ICON), Some((32, 32)));
        assert_eq!(png_dimensions(b"GIF89a"), None);
    }
}
