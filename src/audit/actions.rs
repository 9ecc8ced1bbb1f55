//! The audit action catalogue: every `action` an audit event may carry, in one list, grouped as
//! seed 001 groups them. A unit test reads `src/` and fails when code writes an action that is not
//! here, so a new kind of event cannot appear in the trail without being named in this list.

/// One kind of audit event, with the group it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditAction {
    pub name: &'static str,
    pub group: ActionGroup,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActionGroup {
    Request,
    Lease,
    VaultSync,
    Discovery,
    Issuance,
    Permissions,
    Commander,
    Otp,
    Authority,
    Role,
    BreakGlass,
    Review,
    Triage,
    SignIn,
    Admin,
    BotInstall,
    Channel,
    Audit,
    Service,
}

macro_rules! catalogue {
    ($($group:ident: [$($name:literal),+ $(,)?]),+ $(,)?) => {
        /// Every action, by group.
        pub const ACTIONS: &[AuditAction] = &[
            $($(AuditAction { name: $name, group: ActionGroup::$group },)+)+
        ];
    };
}

catalogue! {
    Request: [
        "REQUEST_SUBMITTED", "REQUEST_AUTO_APPROVED", "APPROVAL_RECORDED", "APPROVAL_REFUSED",
        "REQUEST_APPROVED", "REQUEST_DENIED", "DENIAL_REFUSED", "REQUEST_UNFULFILLABLE",
        "APPROVERS_REMINDED", "REQUEST_ESCALATED", "REQUEST_EXPIRED_UNDECIDED",
        "ACCESS_DENIED_NOT_REQUESTER", "ACCESS_DENIED_NOT_VISIBLE",
    ],
    Lease: [
        "LEASE_RELEASED", "LEASE_EXPIRED", "LEASE_REVOKED", "LEASE_REVOKED_PERMISSION_LOST",
        "LEASE_EXTENDED", "EXTENSION_REQUESTED", "EXTENSION_DENIED", "EXTENSION_REFUSED",
        "SHARE_REVOKED",
    ],
    VaultSync: [
        "VAULT_SYNC_DETECTED_CHANGES", "VAULT_PREFLIGHT_PASSED", "VAULT_PREFLIGHT_DEFERRED",
        "CREDENTIAL_ROTATED", "RECORD_ORPHANED",
    ],
    Discovery: ["RECORD_AUTO_DISCOVERED"],
    Issuance: [
        "ISSUANCE_TOKEN_MINTED", "ISSUANCE_TOKEN_MISMATCH", "ISSUANCE_SUCCEEDED",
        "ISSUANCE_VAULT_FAIL", "ISSUANCE_NOT_YOURS", "ISSUANCE_RATE_LIMITED",
    ],
    Permissions: [
        "VAULT_PERMISSIONS_CHANGED", "ACCESS_DENIED_INSUFFICIENT_PERMISSION", "USER_PROFILE_UPDATED",
    ],
    Commander: ["COMMANDER_ROTATION_DUE"],
    Otp: [
        "OTP_SENT", "OTP_SEND_FAILED", "OTP_VERIFIED", "OTP_WRONG_CODE", "OTP_LOCKED",
        "OTP_CHALLENGE_STARTED", "TOTP_ENROLLED", "TOTP_CONFIRMED", "TOTP_RESET", "PHONE_NUMBER_SET",
        "TOTP_REMOVED", "FACTOR_PROOF_SENT", "FACTOR_PROOF_WRONG_CODE", "FACTOR_PROOF_LOCKED",
        "FACTOR_PROOF_VERIFIED", "TOTP_INVITATION_ISSUED", "TOTP_INVITATION_USED",
        "OTP_GUESS_CAP_REACHED", "SMS_CREDENTIALS_REFUSED",
    ],
    Authority: [
        "AUTHORITY_GRANTED", "AUTHORITY_REVOKED", "APPROVAL_CHANNEL_SET", "APPROVAL_CHANNEL_CLEARED",
    ],
    Role: ["ROLE_CHANGED"],
    BreakGlass: ["BREAK_GLASS_APPROVED", "BREAK_GLASS_REVIEWED"],
    Review: [
        "ACCESS_REVIEW_CAMPAIGN_STARTED", "ACCESS_REVIEW_DECIDED", "ACCESS_REVIEW_REMINDED",
        "ACCESS_REVIEW_ESCALATED", "ACCESS_REVIEW_COMPLETED",
    ],
    Triage: ["TRIAGE_APPROVED", "TRIAGE_DENIED"],
    SignIn: ["SIGNED_IN", "SIGNIN_REFUSED"],
    Admin: ["POLICY_DEFAULT_LOADED", "DEMO_DATA_LOADED", "RECORD_SENSITIVITY_CHANGED"],
    BotInstall: ["BOT_INSTALLED", "BOT_INSTALL_UPDATED", "BOT_UNINSTALLED"],
    Channel: ["CONNECTOR_HOST_REFUSED"],
    Audit: [
        "AUDIT_EXPORTED", "AUDIT_ARCHIVED", "AUDIT_VERIFY_FAILED", "REPORT_DOWNLOADED",
    ],
    Service: ["SERVICE_STARTED", "SERVICE_STOPPED"],
}

/// The catalogue entry for an action name.
pub fn action(name: &str) -> Option<&'static AuditAction> {
    ACTIONS.iter().find(|a| a.name == name)
}

pub fn is_known(name: &str) -> bool {
    action(name).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::path::Path;

    /// Upper-case words in `src/` that are not audit actions: other vocabularies (statuses,
    /// trace stages, environment variables, Commander's answers). A new SCREAMING_SNAKE string in
    /// the code must be either an action in the catalogue or listed here — so nobody adds an
    /// audit action without the catalogue noticing.
    const NOT_ACTIONS: &[&str] = &[
        // Decision trace stages.
        "REQUEST_SUBMISSION",
        "AUTHORITY_RESOLUTION",
        "APPROVAL_DECISION",
        "ISSUANCE_CHECK",
        "ISSUANCE_EVENT",
        "REVOCATION_EVENT",
        // States of an inbound activity in `processed_activities`.
        "IN_PROGRESS",
        // Kinds of notices kept in `notifications` until they can be delivered.
        "APPROVAL_NEEDED",
        "EXTENSION_NEEDED",
        // Request statuses.
        "RENEWAL_PENDING",
        "REQUIRES_TRIAGE",
        // Commander's rotation vocabulary.
        "MONTHLY_BY_DAY",
        "RRS_CONTROLLER_DOWN",
        "RRS_NO_CONTROLLER",
        "RRS_NO_ROTATION",
        "RRS_ONLINE",
        // The access report's words for decisions that are not one approver's say, and the kind
        // of an access review row (a break-glass use to review).
        "AUTO_APPROVE",
        "BREAK_GLASS",
        "EXPIRED_UNDECIDED",
        // serde's rename rule.
        "SCREAMING_SNAKE_CASE",
    ];
    /// Environment variable names.
    const NOT_ACTION_PREFIXES: &[&str] = &[
        "PASSKEY_",
        "CARGO_",
        "BUILD_",
        "DATABASE_",
        "KEEPER_",
        "IDENTITY_",
        "AZURE_",
        "MSI_",
    ];

    /// The string literals in a Rust file's non-test code shaped like `"WORD_WORD"`.
    fn screaming_literals(text: &str, out: &mut BTreeSet<String>) {
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        let bytes = code.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'"' {
                let start = i + 1;
                let mut j = start;
                while j < bytes.len()
                    && (bytes[j].is_ascii_uppercase()
                        || bytes[j].is_ascii_digit()
                        || bytes[j] == b'_')
                {
                    j += 1;
                }
                let word = &code[start..j];
                if j < bytes.len()
                    && bytes[j] == b'"'
                    && word.contains('_')
                    && word.starts_with(|c: char| c.is_ascii_uppercase())
                    && !word.ends_with('_')
                {
                    out.insert(word.to_string());
                    i = j + 1;
                    continue;
                }
            }
            i += 1;
        }
    }

    fn walk(dir: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                screaming_literals(&std::fs::read_to_string(&path).unwrap(), out);
            }
        }
    }

    #[test]
    fn every_action_the_code_writes_is_in_the_catalogue() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut found = BTreeSet::new();
        walk(&src, &mut found);
        // The scan sees the code: the actions every part of the lifecycle writes are among them.
        for sample in [
            "REQUEST_SUBMITTED",
            "LEASE_EXPIRED",
            "AUTHORITY_GRANTED",
            "BOT_INSTALLED",
        ] {
            assert!(found.contains(sample), "the scan missed {sample}");
        }
        let unknown: Vec<&String> = found
            .iter()
            .filter(|w| !is_known(w))
            .filter(|w| !NOT_ACTIONS.contains(&w.as_str()))
            .filter(|w| !NOT_ACTION_PREFIXES.iter().any(|p| w.starts_with(p)))
            .collect();
        assert!(
            unknown.is_empty(),
            "upper-case strings in src/ that are neither audit actions in src/audit/actions.rs \
             nor listed as NOT_ACTIONS there (add each to the one it is): {unknown:?}"
        );
    }

    #[test]
    fn the_scanner_finds_literals_and_ignores_test_code() {
        let mut found = BTreeSet::new();
        screaming_literals(
            "let a = \"NEW_THING\"; f(\"lower_case\", \"ONE\", \"A_B\");\n#[cfg(test)]\nmod t { \"TEST_ONLY\" }",
            &mut found,
        );
        assert_eq!(
            found.into_iter().collect::<Vec<_>>(),
            vec!["A_B".to_string(), "NEW_THING".to_string()]
        );
    }

    #[test]
    fn names_are_unique_and_shaped_alike() {
        let mut seen = BTreeSet::new();
        for a in ACTIONS {
            assert!(seen.insert(a.name), "{} listed twice", a.name);
            assert!(a.name.chars().all(|c| c.is_ascii_uppercase() || c == '_'));
        }
        assert!(ACTIONS.len() >= 40, "{}", ACTIONS.len());
        assert_eq!(
            action("OTP_LOCKED").map(|a| a.group),
            Some(ActionGroup::Otp)
        );
        assert!(
            !is_known("REQUEST_SUBMISSION"),
            "a trace stage is not an action"
        );
    }
}
