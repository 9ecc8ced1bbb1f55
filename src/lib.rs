//! Passkey: a Microsoft Teams bot for just-in-time access to credentials held in a Keeper vault.
//! See docs/ARCHITECTURE.md for the map of these modules.

pub mod app;
pub mod audit;
pub mod azure;
pub mod bot;
pub mod canonical;
pub mod cards;
pub mod channel;
pub mod config;
pub mod crypto;
pub mod demo;
pub mod doctor;
pub mod domain;
pub mod encoding;
pub mod error;
pub mod governance;
pub mod jobs;
pub mod layers;
pub mod manifest;
pub mod metrics;
pub mod notify;
pub mod openid;
pub mod otp;
pub mod outbound;
pub mod policy;
pub mod private_fs;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod vault;
pub mod web;

/// The crate version, shown by /healthz and the banner.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
