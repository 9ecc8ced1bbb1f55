//! Notices: who should hear about what, and the port that delivers them. Use cases produce
//! notices and alerts; the edges (the bot's `TeamsNotifier`) deliver them. It sits below the use
//! cases and the audit trail, which both alert through it (see src/layers.rs).

/// Who should hear about what. The edges turn these into cards or messages; a notice carries no
/// secret by construction (ids and kinds only).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Notice {
    pub user_id: i64,
    pub request_id: i64,
    pub kind: NoticeKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NoticeKind {
    /// To an approver: a request waits for you.
    ApprovalNeeded,
    /// To an approver: still waiting.
    Reminder,
    /// To an admin: a request waits in triage.
    TriageNeeded,
    /// To authorities and admins: break-glass was used.
    BreakGlassUsed,
    /// To an approver: the requester asks for more time.
    ExtensionNeeded,
    /// To an admin: the vault bridge needs a person (Commander's login broke…).
    VaultNeedsOperator,
    /// To the requester: the request changed (the card shows its state).
    StatusChanged,
    /// To the requester: the lease ends soon.
    ExpiringSoon,
}

/// Delivers notices (the bot: Teams messages; tests: a recorder). Delivery is best effort and
/// never fails the use case that produced the notice: a person missing a message still sees the
/// state in `my requests`.
#[async_trait::async_trait]
pub trait Notifier: Send + Sync {
    async fn deliver(&self, notices: &[Notice]);
    /// The request changed state: copies of cards about it may need updating.
    async fn request_changed(&self, _request_id: i64) {}
    /// A text for every admin (the audit trail failed verification…). Without a channel to
    /// reach them, it goes to the error log.
    async fn alert_admins(&self, text: &str) {
        tracing::error!(alert = text, "admin alert not delivered (no notifier)");
    }
    /// A text for one person in their 1:1 chat (their second factor changed…). Without a
    /// channel, a log line says it was not delivered (never the text: it is theirs alone).
    async fn tell_user(&self, user_id: i64, _text: &str) {
        tracing::warn!(user_id, "message not delivered (no notifier)");
    }
}

/// Drops notices (with a debug line): for the CLI and tests that don't look at them.
pub struct SilentNotifier;

#[async_trait::async_trait]
impl Notifier for SilentNotifier {
    async fn deliver(&self, notices: &[Notice]) {
        for n in notices {
            tracing::debug!(user_id = n.user_id, request_id = n.request_id, kind = ?n.kind, "notice not delivered (no notifier)");
        }
    }
}
