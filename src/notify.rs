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

/// Who should get an access review card (#19.2), and why. Ids and kinds only, like [`Notice`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReviewNotice {
    pub user_id: i64,
    pub review_id: i64,
    pub kind: ReviewNoticeKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReviewNoticeKind {
    /// To an owner: a new campaign asks you to review a record.
    Review,
    /// To an owner: the review is still open.
    Reminder,
    /// To an admin: nobody answered the review (or the record has no owner).
    Escalated,
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
    /// Sends access review cards. Without a channel they are dropped with a debug line: the
    /// review stays open and `admin health` counts it.
    async fn review_cards(&self, notices: &[ReviewNotice]) {
        for n in notices {
            tracing::debug!(user_id = n.user_id, review_id = n.review_id, kind = ?n.kind, "review card not delivered (no notifier)");
        }
    }
    /// A review changed (a decision): copies of its card may need updating.
    async fn review_changed(&self, _review_id: i64) {}
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
