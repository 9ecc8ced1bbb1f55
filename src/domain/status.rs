//! The request lifecycle: nine states and the one table of legal moves between them.
//! Every status write in the stores names the state it expects to replace, so two writers racing
//! the same move cannot both win.

use super::enums::text_enum;

text_enum!(
    /// Where a request is in its life.
    RequestStatus, "request status" {
        Pending => "PENDING",
        Approved => "APPROVED",
        Issued => "ISSUED",
        Denied => "DENIED",
        Expired => "EXPIRED",
        Released => "RELEASED",
        RenewalPending => "RENEWAL_PENDING",
        RequiresTriage => "REQUIRES_TRIAGE",
        Unfulfillable => "UNFULFILLABLE",
    }
);

/// A move the lifecycle does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a request cannot go from {from} to {to}")]
pub struct IllegalTransition {
    pub from: RequestStatus,
    pub to: RequestStatus,
}

impl RequestStatus {
    /// The state as people read it, on every card and in every message ("Waiting for approval",
    /// "Renewal pending"); the upper-case names are for the database and the audit trail only.
    /// `cards::status_words` adds what only the row knows (a revocation).
    pub fn in_words(self) -> &'static str {
        use RequestStatus::*;
        match self {
            Pending => "Waiting for approval",
            RequiresTriage => "Waiting for an admin",
            Approved => "Approved",
            Issued => "Approved, retrieved",
            RenewalPending => "Renewal pending",
            Denied => "Denied",
            Expired => "Ended",
            Released => "Released",
            Unfulfillable => "Cannot be fulfilled",
        }
    }

    /// The transition table. Reasons for each edge:
    /// - PENDING: approvers decide (APPROVED/DENIED), policy or an admin escalates (REQUIRES_TRIAGE),
    ///   nobody decides in time (EXPIRED), or the record vanished meanwhile (UNFULFILLABLE).
    /// - REQUIRES_TRIAGE: an admin routes it to approvers (PENDING) or decides it outright.
    /// - APPROVED: the first share is issued (ISSUED), the vault can't serve it (UNFULFILLABLE), the
    ///   lease ends (EXPIRED; admin revocation and permission loss end it the same way), the requester
    ///   releases it, or asks for more time (RENEWAL_PENDING).
    /// - ISSUED: the lease ends or is released, or more time is asked for.
    /// - RENEWAL_PENDING: the extension is decided (back to APPROVED/ISSUED with a new expiry), or the
    ///   lease runs out or is released meanwhile.
    /// - DENIED, EXPIRED, RELEASED, UNFULFILLABLE are final.
    pub fn allowed_next(self) -> &'static [RequestStatus] {
        use RequestStatus::*;
        match self {
            Pending => &[Approved, Denied, RequiresTriage, Expired, Unfulfillable],
            RequiresTriage => &[Pending, Approved, Denied, Expired],
            Approved => &[Issued, Unfulfillable, Expired, Released, RenewalPending],
            Issued => &[Expired, Released, RenewalPending],
            RenewalPending => &[Approved, Issued, Expired, Released],
            Denied | Expired | Released | Unfulfillable => &[],
        }
    }

    pub fn can_become(self, next: RequestStatus) -> bool {
        self.allowed_next().contains(&next)
    }

    /// Checks a move against the table.
    pub fn transition(self, next: RequestStatus) -> Result<RequestStatus, IllegalTransition> {
        if self.can_become(next) {
            Ok(next)
        } else {
            Err(IllegalTransition {
                from: self,
                to: next,
            })
        }
    }

    pub fn is_final(self) -> bool {
        self.allowed_next().is_empty()
    }

    /// A lease is running: the requester may hold or retrieve the credential.
    pub fn has_live_lease(self) -> bool {
        matches!(
            self,
            RequestStatus::Approved | RequestStatus::Issued | RequestStatus::RenewalPending
        )
    }
}

#[cfg(test)]
mod tests {
    use super::RequestStatus::{self, *};

    /// The full 9×9 table, spelled out independently of `allowed_next`, so an edit to one
    /// without the other fails here.
    const LEGAL: &[(RequestStatus, RequestStatus)] = &[
        (Pending, Approved),
        (Pending, Denied),
        (Pending, RequiresTriage),
        (Pending, Expired),
        (Pending, Unfulfillable),
        (RequiresTriage, Pending),
        (RequiresTriage, Approved),
        (RequiresTriage, Denied),
        (RequiresTriage, Expired),
        (Approved, Issued),
        (Approved, Unfulfillable),
        (Approved, Expired),
        (Approved, Released),
        (Approved, RenewalPending),
        (Issued, Expired),
        (Issued, Released),
        (Issued, RenewalPending),
        (RenewalPending, Approved),
        (RenewalPending, Issued),
        (RenewalPending, Expired),
        (RenewalPending, Released),
    ];

    #[test]
    fn every_pair_is_legal_exactly_when_the_table_says_so() {
        let mut illegal = 0;
        for from in RequestStatus::ALL {
            for to in RequestStatus::ALL {
                let expected = LEGAL.contains(&(*from, *to));
                assert_eq!(from.can_become(*to), expected, "{from} -> {to}");
                match from.transition(*to) {
                    Ok(next) => assert_eq!(next, *to),
                    Err(e) => {
                        illegal += 1;
                        assert_eq!(
                            e.to_string(),
                            format!("a request cannot go from {from} to {to}")
                        );
                    }
                }
            }
        }
        assert_eq!(illegal, 81 - LEGAL.len());
    }

    #[test]
    fn final_states_have_no_way_out_and_nothing_returns_to_pending_but_triage() {
        for s in [Denied, Expired, Released, Unfulfillable] {
            assert!(s.is_final());
            assert!(!s.has_live_lease());
        }
        for from in RequestStatus::ALL {
            if *from != RequiresTriage {
                assert!(!from.can_become(Pending), "{from} must not reopen");
            }
            assert!(
                !from.can_become(*from),
                "{from} -> itself is not a transition"
            );
        }
    }
}
