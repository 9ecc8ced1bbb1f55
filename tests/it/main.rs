//! The integration tests: one binary, one module per area (run one area with
//! `cargo test --test it otp::`). One binary links the app and compiles `common/` once, where a
//! binary per file did both for each file.
//!
//! Every module shares this process. A test sets no environment variable and installs no global
//! tracing subscriber that other modules' assertions could see; log captures go through
//! `common::logs`. (`issuance_web` keeps its one global capture: it only looks there for its own
//! share URLs and tokens, which no other test can log.)

#[macro_use]
mod common;

mod audit;
mod audit_sequencer;
mod azure;
mod bot_admin;
mod bot_cards;
mod bot_channel;
mod bot_directory;
mod bot_input;
mod bot_lifecycle;
mod bot_waiting;
mod browser;
mod cards;
mod cards_narrow;
mod channel;
mod cli;
mod commander;
mod connector;
mod deploy;
mod dev_vault;
mod directory;
mod fuzz;
mod governance_admin;
mod identities;
mod issuance_web;
mod lease_expiry;
mod lifecycle;
mod manifest;
mod openid;
mod otp;
mod permissions;
mod plain_words;
mod playground_config;
mod policy_properties;
mod policy_store;
mod production;
mod reports;
mod reviews;
mod scheduler;
mod server;
mod store_contract;
mod telemetry;
mod time_zones;
mod turns;
mod vault_sync;
