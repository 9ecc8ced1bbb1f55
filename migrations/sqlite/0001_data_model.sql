-- Passkey data model, SQLite (the embedded default; mirrors migrations/postgres). Never edit once landed: add a new numbered file instead.
-- Nearest equivalents of the Postgres types: times are fixed-width UTC text
-- (YYYY-MM-DDTHH:MM:SS.ffffffZ, so text order is time order), uuids are 16-byte blobs,
-- JSON bodies are text, booleans are 0/1.

CREATE TABLE users (
    id                    INTEGER PRIMARY KEY AUTOINCREMENT,
    aad_object_id         TEXT NOT NULL UNIQUE,
    tenant_id             TEXT,
    teams_user_id         TEXT,
    upn                   TEXT,
    email                 TEXT,
    display_name          TEXT NOT NULL,
    role                  TEXT NOT NULL DEFAULT 'REQUESTER' CHECK (role IN ('REQUESTER', 'APPROVER', 'ADMIN')),
    allow_multiple_leases INTEGER NOT NULL DEFAULT 0,
    phone_ciphertext      BLOB,
    totp_secret_ciphertext BLOB,
    totp_last_step        BIGINT,
    created_at            TEXT NOT NULL,
    updated_at            TEXT NOT NULL
);
CREATE INDEX users_email_idx ON users (lower(email));
CREATE INDEX users_upn_idx ON users (lower(upn));

CREATE TABLE vault_folders (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    vault_uid      TEXT NOT NULL UNIQUE,
    name           TEXT NOT NULL,
    last_synced_at TEXT,
    created_at     TEXT NOT NULL
);

CREATE TABLE vault_folder_permissions (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    folder_id      BIGINT NOT NULL REFERENCES vault_folders (id),
    principal_type TEXT NOT NULL CHECK (principal_type IN ('USER', 'TEAM', 'GROUP')),
    principal      TEXT NOT NULL,
    permission     TEXT NOT NULL CHECK (permission IN ('OWNER', 'MANAGER', 'EDITOR', 'VIEWER')),
    synced_at      TEXT NOT NULL,
    UNIQUE (folder_id, principal_type, principal)
);

CREATE TABLE records (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    vault_uid         TEXT NOT NULL UNIQUE,
    title             TEXT NOT NULL,
    record_type       TEXT NOT NULL,
    folder_id         BIGINT REFERENCES vault_folders (id),
    revision          BIGINT NOT NULL DEFAULT 0,
    vault_owner       TEXT,
    owner_user_id     BIGINT REFERENCES users (id),
    sensitivity       TEXT NOT NULL DEFAULT 'MEDIUM' CHECK (sensitivity IN ('LOW', 'MEDIUM', 'HIGH', 'CRITICAL')),
    sync_status       TEXT NOT NULL DEFAULT 'UNKNOWN' CHECK (sync_status IN ('UNKNOWN', 'FRESH', 'STALE', 'ORPHANED')),
    vault_uid_pinned  INTEGER NOT NULL DEFAULT 0,
    discovery_source  TEXT NOT NULL DEFAULT 'MANUAL' CHECK (discovery_source IN ('MANUAL', 'AUTO', 'WEBHOOK')),
    discovered_at     TEXT,
    last_synced_at    TEXT,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL
);
CREATE INDEX records_title_idx ON records (lower(title));

CREATE TABLE governance_policies (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    kind         TEXT NOT NULL CHECK (kind IN ('VISIBILITY', 'ACCESS', 'LEASE')),
    name         TEXT NOT NULL,
    body         TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    active       INTEGER NOT NULL DEFAULT 1,
    created_at   TEXT NOT NULL,
    created_by   TEXT NOT NULL,
    UNIQUE (name, content_hash)
);
-- One active body per policy name.
CREATE UNIQUE INDEX governance_policies_one_active ON governance_policies (name) WHERE active;

CREATE TABLE governed_resources (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    record_id            BIGINT NOT NULL UNIQUE REFERENCES records (id),
    visibility_policy    TEXT NOT NULL,
    access_policy        TEXT NOT NULL,
    lease_policy         TEXT NOT NULL,
    created_at           TEXT NOT NULL
);

-- INV-1: append-only. Rows are revoked (revoked_*) or superseded (superseded_by), never rewritten.
CREATE TABLE governed_resource_authorities (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    resource_id     BIGINT NOT NULL REFERENCES governed_resources (id),
    authority       TEXT NOT NULL CHECK (authority IN ('OWNER', 'CUSTODIAN', 'APPROVER')),
    principal_type  TEXT NOT NULL CHECK (principal_type IN ('USER', 'GROUP', 'ROLE', 'EMAIL')),
    principal       TEXT NOT NULL,
    stage           INTEGER NOT NULL DEFAULT 1 CHECK (stage >= 1),
    valid_from      TEXT NOT NULL,
    valid_to        TEXT,
    created_at      TEXT NOT NULL,
    created_by      TEXT NOT NULL,
    revoked_at      TEXT,
    revoked_by      TEXT,
    revoked_reason  TEXT,
    superseded_by   BIGINT REFERENCES governed_resource_authorities (id)
);
CREATE INDEX gra_resource_active_idx ON governed_resource_authorities (resource_id) WHERE revoked_at IS NULL;

CREATE TRIGGER gra_append_only_delete BEFORE DELETE ON governed_resource_authorities
BEGIN
    SELECT RAISE(ABORT, 'INV-1: authority rows are append-only; revoke instead of delete');
END;
CREATE TRIGGER gra_immutable_columns BEFORE UPDATE ON governed_resource_authorities
WHEN NEW.id IS NOT OLD.id
  OR NEW.resource_id IS NOT OLD.resource_id
  OR NEW.authority IS NOT OLD.authority
  OR NEW.principal_type IS NOT OLD.principal_type
  OR NEW.principal IS NOT OLD.principal
  OR NEW.stage IS NOT OLD.stage
  OR NEW.valid_from IS NOT OLD.valid_from
  OR NEW.valid_to IS NOT OLD.valid_to
  OR NEW.created_at IS NOT OLD.created_at
  OR NEW.created_by IS NOT OLD.created_by
BEGIN
    SELECT RAISE(ABORT, 'INV-1: authority rows are immutable; revoke or supersede them');
END;
CREATE TRIGGER gra_revoke_once BEFORE UPDATE ON governed_resource_authorities
WHEN OLD.revoked_at IS NOT NULL
  OR (OLD.revoked_by IS NOT NULL AND NEW.revoked_by IS NOT OLD.revoked_by)
  OR (OLD.revoked_reason IS NOT NULL AND NEW.revoked_reason IS NOT OLD.revoked_reason)
  OR (OLD.superseded_by IS NOT NULL AND NEW.superseded_by IS NOT OLD.superseded_by)
BEGIN
    SELECT RAISE(ABORT, 'INV-1: authority row was already revoked or superseded');
END;

CREATE TABLE requests (
    id                        INTEGER PRIMARY KEY AUTOINCREMENT,
    requester_id              BIGINT NOT NULL REFERENCES users (id),
    record_id                 BIGINT NOT NULL REFERENCES records (id),
    status                    TEXT NOT NULL CHECK (status IN ('PENDING', 'APPROVED', 'ISSUED', 'DENIED', 'EXPIRED',
                                  'RELEASED', 'RENEWAL_PENDING', 'REQUIRES_TRIAGE', 'UNFULFILLABLE')),
    justification             TEXT NOT NULL,
    ticket_id                 TEXT,
    requested_duration_secs   BIGINT NOT NULL CHECK (requested_duration_secs > 0),
    approved_duration_secs    BIGINT,
    break_glass               INTEGER NOT NULL DEFAULT 0,
    required_approvals        INTEGER NOT NULL DEFAULT 1,
    policy_version            TEXT,
    decided_by                BIGINT REFERENCES users (id),
    decided_at                TEXT,
    decision_reason           TEXT,
    lease_started_at          TEXT,
    lease_expires_at          TEXT,
    ended_at                  TEXT,
    issuance_token_hash       TEXT CHECK (issuance_token_hash IS NULL OR issuance_token_hash GLOB '[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]'),
    issuance_token_expires_at TEXT,
    issuance_count            INTEGER NOT NULL DEFAULT 0 CHECK (issuance_count >= 0),
    max_issuances             INTEGER NOT NULL DEFAULT 3 CHECK (max_issuances >= 0),
    extension_count           INTEGER NOT NULL DEFAULT 0,
    renewal_duration_secs     BIGINT,
    preflight_attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at           TEXT,
    created_at                TEXT NOT NULL,
    updated_at                TEXT NOT NULL,
    CHECK (issuance_count <= max_issuances)
);
CREATE INDEX requests_requester_idx ON requests (requester_id, created_at DESC);
CREATE INDEX requests_status_idx ON requests (status);
CREATE INDEX requests_lease_expiry_idx ON requests (lease_expires_at) WHERE status IN ('APPROVED', 'ISSUED', 'RENEWAL_PENDING');

-- One row per approver decision (quorum: N of M, staged).
CREATE TABLE request_approvals (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id  BIGINT NOT NULL REFERENCES requests (id),
    approver_id BIGINT NOT NULL REFERENCES users (id),
    stage       INTEGER NOT NULL DEFAULT 1,
    decision    TEXT NOT NULL CHECK (decision IN ('APPROVE', 'DENY')),
    comment     TEXT,
    decided_at  TEXT NOT NULL,
    UNIQUE (request_id, approver_id)
);

-- INV-5: the share URL itself is never stored; only its SHA-256 and the vault's share id.
CREATE TABLE issuance_events (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id      BIGINT NOT NULL REFERENCES requests (id),
    share_link_hash TEXT NOT NULL CHECK (share_link_hash GLOB '[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]'),
    vault_share_id  TEXT NOT NULL,
    client_ip       TEXT,
    user_agent      TEXT,
    issued_at       TEXT NOT NULL,
    expires_at      TEXT NOT NULL,
    revoked_at      TEXT,
    revoke_attempts INTEGER NOT NULL DEFAULT 0,
    last_revoke_error TEXT
);
CREATE INDEX issuance_events_outstanding_idx ON issuance_events (request_id) WHERE revoked_at IS NULL;

-- INV-2: insert-only, hash-chained (seq, prev_hash, hash).
CREATE TABLE audit_events (
    seq        BIGINT PRIMARY KEY,
    event_id   BLOB NOT NULL UNIQUE,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    request_id BIGINT,
    record_id  BIGINT,
    detail     TEXT NOT NULL,
    created_at TEXT NOT NULL,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);
CREATE INDEX audit_events_request_idx ON audit_events (request_id);

-- The chain head: appends lock this single row, so the chain order is the commit order.
CREATE TABLE audit_chain_head (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    seq       BIGINT NOT NULL,
    hash      TEXT NOT NULL
);
INSERT INTO audit_chain_head (id, seq, hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

CREATE TABLE audit_checkpoints (
    seq        BIGINT PRIMARY KEY,
    head_hash  TEXT NOT NULL,
    signed_at  TEXT NOT NULL,
    key_id     TEXT NOT NULL,
    algorithm  TEXT NOT NULL,
    signature  TEXT NOT NULL
);

CREATE TABLE governance_decision_traces (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id         BIGINT REFERENCES requests (id),
    stage              TEXT NOT NULL CHECK (stage IN ('REQUEST_SUBMISSION', 'AUTHORITY_RESOLUTION', 'APPROVAL_DECISION',
                           'ISSUANCE_CHECK', 'ISSUANCE_EVENT', 'REVOCATION_EVENT')),
    outcome            TEXT NOT NULL CHECK (outcome IN ('ALLOW', 'DENY', 'PENDING')),
    reasons            TEXT NOT NULL,
    constraints        TEXT NOT NULL,
    required_approvals TEXT NOT NULL,
    trace              TEXT NOT NULL,
    inputs             TEXT NOT NULL,
    inputs_hash        TEXT NOT NULL,
    policy_version     TEXT NOT NULL,
    code_version       TEXT NOT NULL,
    created_at         TEXT NOT NULL
);
CREATE INDEX traces_request_idx ON governance_decision_traces (request_id);

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'INV-2: audit_events is insert-only (UPDATE refused)');
END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'INV-2: audit_events is insert-only (DELETE refused)');
END;
CREATE TRIGGER traces_no_update BEFORE UPDATE ON governance_decision_traces
BEGIN
    SELECT RAISE(ABORT, 'INV-2: governance_decision_traces is insert-only (UPDATE refused)');
END;
CREATE TRIGGER traces_no_delete BEFORE DELETE ON governance_decision_traces
BEGIN
    SELECT RAISE(ABORT, 'INV-2: governance_decision_traces is insert-only (DELETE refused)');
END;
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'INV-2: audit_checkpoints is insert-only (UPDATE refused)');
END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'INV-2: audit_checkpoints is insert-only (DELETE refused)');
END;

CREATE TABLE notifications (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id     BIGINT NOT NULL REFERENCES users (id),
    request_id  BIGINT REFERENCES requests (id),
    kind        TEXT NOT NULL,
    payload     TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'PENDING' CHECK (status IN ('PENDING', 'SENT', 'FAILED')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT,
    created_at  TEXT NOT NULL,
    sent_at     TEXT
);
CREATE INDEX notifications_pending_idx ON notifications (created_at) WHERE status = 'PENDING';

CREATE TABLE user_permission_cache (
    user_id     BIGINT PRIMARY KEY REFERENCES users (id),
    permissions TEXT NOT NULL,
    resolved_at TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);

CREATE TABLE governance_probe_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    command_id  TEXT NOT NULL,
    invoked_by  TEXT NOT NULL,
    invoked_at  TEXT NOT NULL,
    exit_code   INTEGER NOT NULL,
    fresh       INTEGER NOT NULL,
    degraded    INTEGER NOT NULL,
    duration_ms BIGINT NOT NULL,
    detail      TEXT NOT NULL
);
CREATE INDEX probe_events_invoked_idx ON governance_probe_events (invoked_at);
CREATE INDEX probe_events_command_idx ON governance_probe_events (command_id, invoked_at);

-- Where to reach a conversation proactively. service_url only ever comes from an authenticated activity.
CREATE TABLE conversation_references (
    conversation_id   TEXT PRIMARY KEY,
    conversation_type TEXT NOT NULL,
    channel_id        TEXT NOT NULL,
    service_url       TEXT NOT NULL,
    tenant_id         TEXT,
    bot_id            TEXT NOT NULL,
    user_id           BIGINT REFERENCES users (id),
    aad_object_id     TEXT,
    teams_user_id     TEXT,
    team_id           TEXT,
    reference         TEXT NOT NULL,
    updated_at        TEXT NOT NULL
);
CREATE INDEX conversation_refs_personal_idx ON conversation_references (aad_object_id) WHERE conversation_type = 'personal';

-- Every card the bot sent about a request, so every copy can be updated in place.
CREATE TABLE sent_cards (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id        BIGINT NOT NULL REFERENCES requests (id),
    recipient_user_id BIGINT REFERENCES users (id),
    conversation_id   TEXT NOT NULL,
    activity_id       TEXT NOT NULL,
    card_kind         TEXT NOT NULL,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    UNIQUE (conversation_id, activity_id)
);
CREATE INDEX sent_cards_request_idx ON sent_cards (request_id);

CREATE TABLE otp_challenges (
    id            BLOB PRIMARY KEY,
    request_id    BIGINT NOT NULL REFERENCES requests (id),
    user_id       BIGINT NOT NULL REFERENCES users (id),
    channel       TEXT NOT NULL CHECK (channel IN ('SMS', 'TOTP')),
    code_hash     TEXT CHECK (code_hash IS NULL OR code_hash GLOB '[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]'),
    attempts      INTEGER NOT NULL DEFAULT 0,
    max_attempts  INTEGER NOT NULL DEFAULT 5,
    created_at    TEXT NOT NULL,
    expires_at    TEXT NOT NULL,
    last_sent_at  TEXT,
    consumed_at   TEXT,
    locked_at     TEXT
);
CREATE INDEX otp_challenges_request_idx ON otp_challenges (request_id);

-- Teams redelivers activities it thinks failed: (conversation, activity) is processed once.
CREATE TABLE processed_activities (
    conversation_id TEXT NOT NULL,
    activity_id     TEXT NOT NULL,
    processed_at    TEXT NOT NULL,
    PRIMARY KEY (conversation_id, activity_id)
);
CREATE INDEX processed_activities_age_idx ON processed_activities (processed_at);

-- Lease on a unit of scheduled work, so several instances never run the same unit at once.
CREATE TABLE job_claims (
    job_name     TEXT NOT NULL,
    claim_key    TEXT NOT NULL,
    holder       TEXT NOT NULL,
    claimed_at   TEXT NOT NULL,
    lease_until  TEXT NOT NULL,
    completed_at TEXT,
    PRIMARY KEY (job_name, claim_key)
);
