//! Closed vocabularies stored as upper-case text in both databases.

/// A stored or typed value that is not one of the vocabulary's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} `{value}`")]
pub struct UnknownValue {
    pub kind: &'static str,
    pub value: String,
}

/// Declares a text-backed enum with `as_str`, `FromStr`, `Display`, serde and sqlx support,
/// so the word list lives in exactly one place per vocabulary.
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident, $kind:literal { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::domain::UnknownValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err($crate::domain::UnknownValue { kind: $kind, value: other.to_string() }),
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }

        impl<DB: sqlx::Database> sqlx::Type<DB> for $name
        where
            str: sqlx::Type<DB>,
        {
            fn type_info() -> DB::TypeInfo {
                <str as sqlx::Type<DB>>::type_info()
            }
            fn compatible(ty: &DB::TypeInfo) -> bool {
                <str as sqlx::Type<DB>>::compatible(ty)
            }
        }

        impl<'q, DB: sqlx::Database> sqlx::Encode<'q, DB> for $name
        where
            String: sqlx::Encode<'q, DB>,
        {
            fn encode_by_ref(
                &self,
                buf: &mut <DB as sqlx::Database>::ArgumentBuffer,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <String as sqlx::Encode<'q, DB>>::encode(self.as_str().to_owned(), buf)
            }
        }

        impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for $name
        where
            &'r str: sqlx::Decode<'r, DB>,
        {
            fn decode(value: <DB as sqlx::Database>::ValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
                let text = <&'r str as sqlx::Decode<'r, DB>>::decode(value)?;
                Ok(text.parse::<$name>()?)
            }
        }
    };
}
pub(crate) use text_enum;

text_enum!(
    /// What a person may do in Passkey. Roles are ordered: an admin may do what an approver may.
    Role, "role" { Requester => "REQUESTER", Approver => "APPROVER", Admin => "ADMIN" }
);

text_enum!(
    /// How much harm a leaked credential does; drives escalation and second-factor rules.
    Sensitivity, "sensitivity" { Low => "LOW", Medium => "MEDIUM", High => "HIGH", Critical => "CRITICAL" }
);

text_enum!(
    /// How current our copy of a vault record's metadata is.
    SyncStatus, "sync status" { Unknown => "UNKNOWN", Fresh => "FRESH", Stale => "STALE", Orphaned => "ORPHANED" }
);

text_enum!(
    /// How a record came to be governed.
    DiscoverySource, "discovery source" { Manual => "MANUAL", Auto => "AUTO", Webhook => "WEBHOOK" }
);

text_enum!(
    /// A principal in a Keeper shared folder's ACL.
    VaultPrincipalType, "vault principal type" { User => "USER", Team => "TEAM", Group => "GROUP" }
);

text_enum!(
    /// Keeper shared-folder permission levels, strongest first.
    FolderPermission, "folder permission" { Owner => "OWNER", Manager => "MANAGER", Editor => "EDITOR", Viewer => "VIEWER" }
);

text_enum!(
    /// The kind of authority a principal holds over a governed resource.
    AuthorityKind, "authority" { Owner => "OWNER", Custodian => "CUSTODIAN", Approver => "APPROVER" }
);

text_enum!(
    /// Who an authority row names.
    PrincipalType, "principal type" { User => "USER", Group => "GROUP", Role => "ROLE", Email => "EMAIL" }
);

text_enum!(
    /// The three policy families a governed resource links to.
    PolicyKind, "policy kind" { Visibility => "VISIBILITY", Access => "ACCESS", Lease => "LEASE" }
);

text_enum!(
    /// Where in the lifecycle a governance decision was taken.
    TraceStage, "trace stage" {
        RequestSubmission => "REQUEST_SUBMISSION",
        AuthorityResolution => "AUTHORITY_RESOLUTION",
        ApprovalDecision => "APPROVAL_DECISION",
        IssuanceCheck => "ISSUANCE_CHECK",
        IssuanceEvent => "ISSUANCE_EVENT",
        RevocationEvent => "REVOCATION_EVENT",
    }
);

text_enum!(
    /// One approver's say on a request.
    ApprovalDecision, "approval decision" { Approve => "APPROVE", Deny => "DENY" }
);

text_enum!(
    /// How a one-time code reaches the person: a text message, or their authenticator app.
    OtpChannel, "OTP channel" { Sms => "SMS", Totp => "TOTP" }
);

text_enum!(
    /// Where a phone number came from: the Entra profile (Graph `mobilePhone`) or an admin.
    PhoneSource, "phone number source" { Graph => "GRAPH", Admin => "ADMIN" }
);

text_enum!(
    /// What a proof of the second factor on file authorises: setting up (or replacing) an
    /// authenticator app, or removing it.
    FactorChange, "factor change" { Enroll => "ENROLL", Remove => "REMOVE" }
);

text_enum!(
    /// The outcome recorded on a decision trace.
    TraceOutcome, "trace outcome" { Allow => "ALLOW", Deny => "DENY", Pending => "PENDING" }
);

impl Role {
    /// True when this role includes the powers of `other` (ADMIN ⊇ APPROVER ⊇ REQUESTER).
    pub fn includes(self, other: Role) -> bool {
        self.rank() >= other.rank()
    }

    fn rank(self) -> u8 {
        match self {
            Role::Requester => 0,
            Role::Approver => 1,
            Role::Admin => 2,
        }
    }
}

impl FolderPermission {
    /// OWNER and MANAGER may approve access to a folder's records; EDITOR and VIEWER may request it.
    pub fn may_approve(self) -> bool {
        matches!(self, FolderPermission::Owner | FolderPermission::Manager)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_word_round_trips_and_unknown_words_are_named() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), *role);
        }
        for stage in TraceStage::ALL {
            assert_eq!(stage.as_str().parse::<TraceStage>().unwrap(), *stage);
        }
        let err = "SUPERUSER".parse::<Role>().unwrap_err();
        assert_eq!(err.to_string(), "unknown role `SUPERUSER`");
        // Words are exact: the stored vocabulary is upper case.
        assert!("admin".parse::<Role>().is_err());
    }

    #[test]
    fn role_ordering_gives_admins_approver_powers_but_not_the_reverse() {
        assert!(Role::Admin.includes(Role::Approver));
        assert!(Role::Approver.includes(Role::Requester));
        assert!(!Role::Requester.includes(Role::Approver));
        assert!(!Role::Approver.includes(Role::Admin));
    }

    #[test]
    fn serde_uses_the_stored_words() {
        assert_eq!(
            serde_json::to_string(&Sensitivity::Critical).unwrap(),
            "\"CRITICAL\""
        );
        let parsed: FolderPermission = serde_json::from_str("\"MANAGER\"").unwrap();
        assert!(parsed.may_approve());
        assert!(serde_json::from_str::<FolderPermission>("\"ROOT\"").is_err());
    }
}
