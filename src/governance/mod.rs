//! Use cases: what Passkey does, independent of Teams and HTTP. The bot and the CLI are two edges
//! over the same calls.
//!
//! - [`permissions`]: who may request from and approve for which vault folders (folder ACLs and
//!   Entra group memberships), cached for five minutes.
//! - [`directory`]: people and groups behind EMAIL and GROUP approvers (Microsoft Graph), and
//!   installing the Teams app for people the bot has never talked to.
//! - [`admin`]: the admin's authority and role changes, each audited.
//! - [`conversations`]: what the bot keeps about whom it talks to and where (turn claims,
//!   people, conversation addresses, sent cards).
//! - [`coalesce`]: concurrent callers' small writes of one kind written together (turn claims
//!   and finishes).
//! - [`policies`]: default policy bodies seeded, the active set loaded as the engine, replay.
//! - [`reports`]: the access report (rows per request, totals per record and per person).
//! - [`reviews`]: access review campaigns: owners keep or remove authority rows, break-glass
//!   uses are reviewed after the fact.

pub mod admin;
pub mod coalesce;
pub mod conversations;
pub mod directory;
pub mod events;
pub mod identities;
pub mod lifecycle;
pub mod permissions;
pub mod policies;
pub mod reports;
pub mod reviews;
pub mod vault_sync;
