//! Pure domain types: no I/O, no clock reads (time comes in as a [`Timestamp`]).

mod enums;
mod status;
mod time;

pub use enums::{
    ApprovalDecision, AuthorityKind, DiscoverySource, FactorChange, FolderPermission, OtpChannel,
    PhoneSource, PolicyKind, PrincipalType, Role, Sensitivity, SyncStatus, TraceOutcome,
    TraceStage, UnknownValue, VaultPrincipalType,
};
pub use status::{IllegalTransition, RequestStatus};
pub use time::{Clock, ManualClock, SystemClock, Timestamp, Zone, for_reader, format_duration};
