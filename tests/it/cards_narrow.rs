//! Every card kind rendered by the official Adaptive Cards renderer (the `adaptivecards` npm
//! package, default host config) at 336 px, a phone's chat width in Teams, in headless Chromium:
//! no button title may be cut ("Retri… / Ext… / Rele…", #18.10). Each ShowCard is opened in turn
//! so the buttons inside it (Release's confirmation, Extend's) are measured too.
//!
//! Needs Chromium and chromedriver (as `browser.rs`) and the renderer: `npm install` of the pinned
//! version into `target/adaptivecards/` (done here when npm is there; `.ci/run` does it too), or
//! `PASSKEY_ADAPTIVECARDS_JS` naming `adaptivecards.min.js`. Missing pieces skip loudly, except
//! under `CI=true`, where they fail.

use crate::browser::{Driver, browser_tools, in_ci};
use crate::cards::every_card;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The renderer version the widths were checked with.
const ADAPTIVECARDS_VERSION: &str = "3.0.6";
/// Teams' narrowest chat column for a card on a phone.
const WIDTH_PX: u32 = 336;

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// The renderer's script, installed with npm when it is not there yet; None after a loud note.
fn renderer_script() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PASSKEY_ADAPTIVECARDS_JS") {
        return Some(PathBuf::from(path));
    }
    let prefix = target_dir().join("adaptivecards");
    let script = prefix.join("node_modules/adaptivecards/dist/adaptivecards.min.js");
    if !script.is_file() {
        std::fs::create_dir_all(&prefix).unwrap();
        let _ = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&prefix)
            .arg(format!("adaptivecards@{ADAPTIVECARDS_VERSION}"))
            .status();
    }
    if script.is_file() {
        return Some(script);
    }
    let message = format!(
        "the adaptivecards renderer is not installed (npm install --prefix {} adaptivecards@{ADAPTIVECARDS_VERSION})",
        prefix.display()
    );
    if in_ci() {
        panic!("CI=true but {message}");
    }
    eprintln!("\n*** SKIPPED the narrow-card test: {message} ***\n");
    None
}

/// Renders each card into its own 336 px column, then measures every visible button, and again
/// with each ShowCard opened. Returns `{cards, buttons, cut: [{card, title, scroll, client}]}`.
const MEASURE: &str = r#"
const [cards, width, hostConfig] = arguments;
const out = { cards: 0, buttons: 0, cut: [] };
const seen = new Set();
function measure(name, root) {
  for (const button of root.querySelectorAll('button')) {
    if (button.offsetParent === null) continue;
    const title = (button.innerText || button.getAttribute('aria-label') || '').trim();
    const key = name + '|' + title + '|' + button.getBoundingClientRect().top;
    if (!seen.has(key)) { seen.add(key); out.buttons++; }
    for (const el of [button, ...button.querySelectorAll('*')]) {
      if (el.scrollWidth > el.clientWidth + 1) {
        out.cut.push({ card: name, title, scroll: el.scrollWidth, client: el.clientWidth });
        break;
      }
    }
  }
}
for (const [name, json] of cards) {
  const column = document.createElement('div');
  column.style.width = width + 'px';
  column.style.marginBottom = '24px';
  column.setAttribute('data-card', name);
  document.body.appendChild(column);
  const card = new AdaptiveCards.AdaptiveCard();
  if (hostConfig) card.hostConfig = new AdaptiveCards.HostConfig(hostConfig);
  card.parse(json);
  const rendered = card.render();
  if (!rendered) throw new Error('the renderer refused ' + name);
  column.appendChild(rendered);
  out.cards++;
  measure(name, column);
  for (let i = 0; ; i++) {
    const toggles = [...column.querySelectorAll('button[aria-expanded]')].filter(b => b.offsetParent !== null);
    if (i >= toggles.length) break;
    if (toggles[i].getAttribute('aria-expanded') !== 'true') toggles[i].click();
    measure(name + ' > ' + toggles[i].innerText.trim(), column);
    if (toggles[i].getAttribute('aria-expanded') === 'true') toggles[i].click();
  }
}
return out;
"#;

/// The renderer's default host config (`null`), and Teams' way of laying actions out: buttons
/// stretched to share the row equally, which is where "Retri… / Ext… / Rele…" was seen.
fn host_configs() -> [(&'static str, Value); 2] {
    [
        ("default host config", Value::Null),
        (
            "stretched actions",
            json!({ "actions": {
                "actionAlignment": "stretch", "actionsOrientation": "horizontal",
                "buttonSpacing": 8, "maxActions": 6, "spacing": "default",
                "showCard": { "actionMode": "inline", "inlineTopMargin": 16 },
            }}),
        ),
    ]
}

async fn measure(
    session: &crate::browser::Session<'_>,
    cards: &[(String, Value)],
    host_config: &Value,
) -> Value {
    let cards: Vec<Value> = cards.iter().map(|(n, c)| json!([n, c])).collect();
    session
        .call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": MEASURE, "args": [cards, WIDTH_PX, host_config] })),
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_card_at_336_px_shows_every_button_title_whole() {
    let Some((driver_bin, browser_bin)) = browser_tools() else {
        return;
    };
    let Some(script) = renderer_script() else {
        return;
    };
    let dir = target_dir().join("cards-narrow");
    std::fs::create_dir_all(&dir).unwrap();
    let css = script.with_file_name("adaptivecards.css");
    let page = dir.join("index.html");
    std::fs::write(
        &page,
        format!(
            "<!doctype html><html><head><meta charset=\"utf-8\">{}<script src=\"file://{}\"></script></head>\
             <body style=\"margin:8px;font-family:'Segoe UI',sans-serif\"></body></html>",
            if css.is_file() {
                format!("<link rel=\"stylesheet\" href=\"file://{}\">", css.display())
            } else {
                String::new()
            },
            script.display()
        ),
    )
    .unwrap();

    let driver = Driver::start(&driver_bin).await;
    let session = driver.session(&browser_bin).await;
    session.go(&format!("file://{}", page.display())).await;

    // The check has teeth: a card whose buttons cannot fit is caught.
    let crowded_actions: Vec<Value> = [
        "Retrieve the credential",
        "Extend by another hour",
        "Release access now",
    ]
    .iter()
    .map(|t| json!({"type": "Action.Execute", "title": t, "verb": "x"}))
    .collect();
    let crowded = json!({
        "type": "AdaptiveCard", "version": "1.5", "body": [],
        "actions": crowded_actions,
    });
    let cards = every_card("db-prod", "Quarterly report for the finance team");
    let mut cut = Vec::new();
    for (layout, host_config) in host_configs() {
        let caught = measure(
            &session,
            &[("crowded".into(), crowded.clone())],
            &host_config,
        )
        .await;
        assert!(
            !caught["cut"].as_array().unwrap().is_empty(),
            "{layout}: the measurement misses cut titles: {caught}"
        );
        let result = measure(&session, &cards, &host_config).await;
        assert_eq!(result["cards"], cards.len(), "{layout}: {result}");
        assert!(
            result["buttons"].as_u64().unwrap() > 40,
            "{layout}: too few buttons measured: {result}"
        );
        for c in result["cut"].as_array().unwrap() {
            cut.push(format!(
                "{layout}: {}: {:?} needs {} px, has {}",
                c["card"].as_str().unwrap_or_default(),
                c["title"].as_str().unwrap_or_default(),
                c["scroll"],
                c["client"]
            ));
        }
    }
    let _ = session.screenshot("cards-336.png").await;
    session.close().await;
    assert!(
        cut.is_empty(),
        "button titles cut at {WIDTH_PX} px:\n{}",
        cut.join("\n")
    );
}
