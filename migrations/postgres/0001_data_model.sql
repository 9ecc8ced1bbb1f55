-- Passkey data model, PostgreSQL. Never edit once landed: add a new numbered file instead.
-- Times are timestamptz (UTC), ids are identity bigints (request ids are shown to people as "#42"),
-- externally visible random ids are uuid, structured bodies are jsonb.

CREATE TABLE users (
    id                    BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    aad_object_id         TEXT NOT NULL UNIQUE,
    tenant_id             TEXT,
    teams_user_id         TEXT,
    upn                   TEXT,
    email                 TEXT,
    display_name          TEXT NOT NULL,
    role                  TEXT NOT NULL DEFAULT 'REQUESTER' CHECK (role IN ('REQUESTER', 'APPROVER', 'ADMIN')),
    allow_multiple_leases BOOLEAN NOT NULL DEFAULT FALSE,
    phone_ciphertext      BYTEA,
    totp_secret_ciphertext BYTEA,
    totp_last_step        BIGINT,
    created_at            TIMESTAMPTZ NOT NULL,
    updated_at            TIMESTAMPTZ NOT NULL
);
CREATE INDEX users_email_idx ON users (lower(email));
CREATE INDEX users_upn_idx ON users (lower(upn));

CREATE TABLE vault_folders (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    vault_uid      TEXT NOT NULL UNIQUE,
    name           TEXT NOT NULL,
    last_synced_at TIMESTAMPTZ,
    created_at     TIMESTAMPTZ NOT NULL
);

CREATE TABLE vault_folder_permissions (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    folder_id      BIGINT NOT NULL REFERENCES vault_folders (id),
    principal_type TEXT NOT NULL CHECK (principal_type IN ('USER', 'TEAM', 'GROUP')),
    principal      TEXT NOT NULL,
    permission     TEXT NOT NULL CHECK (permission IN ('OWNER', 'MANAGER', 'EDITOR', 'VIEWER')),
    synced_at      TIMESTAMPTZ NOT NULL,
    UNIQUE (folder_id, principal_type, principal)
);

CREATE TABLE records (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    vault_uid         TEXT NOT NULL UNIQUE,
    title             TEXT NOT NULL,
    record_type       TEXT NOT NULL,
    folder_id         BIGINT REFERENCES vault_folders (id),
    revision          BIGINT NOT NULL DEFAULT 0,
    vault_owner       TEXT,
    owner_user_id     BIGINT REFERENCES users (id),
    sensitivity       TEXT NOT NULL DEFAULT 'MEDIUM' CHECK (sensitivity IN ('LOW', 'MEDIUM', 'HIGH', 'CRITICAL')),
    sync_status       TEXT NOT NULL DEFAULT 'UNKNOWN' CHECK (sync_status IN ('UNKNOWN', 'FRESH', 'STALE', 'ORPHANED')),
    vault_uid_pinned  BOOLEAN NOT NULL DEFAULT FALSE,
    discovery_source  TEXT NOT NULL DEFAULT 'MANUAL' CHECK (discovery_source IN ('MANUAL', 'AUTO', 'WEBHOOK')),
    discovered_at     TIMESTAMPTZ,
    last_synced_at    TIMESTAMPTZ,
    created_at        TIMESTAMPTZ NOT NULL,
    updated_at        TIMESTAMPTZ NOT NULL
);
CREATE INDEX records_title_idx ON records (lower(title));

CREATE TABLE governance_policies (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind         TEXT NOT NULL CHECK (kind IN ('VISIBILITY', 'ACCESS', 'LEASE')),
    name         TEXT NOT NULL,
    body         JSONB NOT NULL,
    content_hash TEXT NOT NULL,
    active       BOOLEAN NOT NULL DEFAULT TRUE,
    created_at   TIMESTAMPTZ NOT NULL,
    created_by   TEXT NOT NULL,
    UNIQUE (name, content_hash)
);
-- One active body per policy name.
CREATE UNIQUE INDEX governance_policies_one_active ON governance_policies (name) WHERE active;

CREATE TABLE governed_resources (
    id                   BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    record_id            BIGINT NOT NULL UNIQUE REFERENCES records (id),
    visibility_policy    TEXT NOT NULL,
    access_policy        TEXT NOT NULL,
    lease_policy         TEXT NOT NULL,
    created_at           TIMESTAMPTZ NOT NULL
);

-- INV-1: append-only. Rows are revoked (revoked_*) or superseded (superseded_by), never rewritten.
CREATE TABLE governed_resource_authorities (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    resource_id     BIGINT NOT NULL REFERENCES governed_resources (id),
    authority       TEXT NOT NULL CHECK (authority IN ('OWNER', 'CUSTODIAN', 'APPROVER')),
    principal_type  TEXT NOT NULL CHECK (principal_type IN ('USER', 'GROUP', 'ROLE', 'EMAIL')),
    principal       TEXT NOT NULL,
    stage           INTEGER NOT NULL DEFAULT 1 CHECK (stage >= 1),
    valid_from      TIMESTAMPTZ NOT NULL,
    valid_to        TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL,
    created_by      TEXT NOT NULL,
    revoked_at      TIMESTAMPTZ,
    revoked_by      TEXT,
    revoked_reason  TEXT,
    superseded_by   BIGINT REFERENCES governed_resource_authorities (id)
);
CREATE INDEX gra_resource_active_idx ON governed_resource_authorities (resource_id) WHERE revoked_at IS NULL;

CREATE FUNCTION gra_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'INV-1: authority rows are append-only; revoke instead of delete (id %)', OLD.id
            USING ERRCODE = 'restrict_violation';
    END IF;
    IF NEW.id IS DISTINCT FROM OLD.id
       OR NEW.resource_id IS DISTINCT FROM OLD.resource_id
       OR NEW.authority IS DISTINCT FROM OLD.authority
       OR NEW.principal_type IS DISTINCT FROM OLD.principal_type
       OR NEW.principal IS DISTINCT FROM OLD.principal
       OR NEW.stage IS DISTINCT FROM OLD.stage
       OR NEW.valid_from IS DISTINCT FROM OLD.valid_from
       OR NEW.valid_to IS DISTINCT FROM OLD.valid_to
       OR NEW.created_at IS DISTINCT FROM OLD.created_at
       OR NEW.created_by IS DISTINCT FROM OLD.created_by THEN
        RAISE EXCEPTION 'INV-1: authority row % is immutable; revoke or supersede it', OLD.id
            USING ERRCODE = 'restrict_violation';
    END IF;
    IF (OLD.revoked_at IS NOT NULL AND NEW.revoked_at IS DISTINCT FROM OLD.revoked_at)
       OR (OLD.revoked_by IS NOT NULL AND NEW.revoked_by IS DISTINCT FROM OLD.revoked_by)
       OR (OLD.revoked_reason IS NOT NULL AND NEW.revoked_reason IS DISTINCT FROM OLD.revoked_reason)
       OR (OLD.superseded_by IS NOT NULL AND NEW.superseded_by IS DISTINCT FROM OLD.superseded_by) THEN
        RAISE EXCEPTION 'INV-1: authority row % was already revoked or superseded', OLD.id
            USING ERRCODE = 'restrict_violation';
    END IF;
    IF OLD.revoked_at IS NOT NULL THEN
        RAISE EXCEPTION 'INV-1: authority row % was already revoked', OLD.id
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER gra_append_only_update BEFORE UPDATE ON governed_resource_authorities
    FOR EACH ROW EXECUTE FUNCTION gra_append_only();
CREATE TRIGGER gra_append_only_delete BEFORE DELETE ON governed_resource_authorities
    FOR EACH ROW EXECUTE FUNCTION gra_append_only();

CREATE TABLE requests (
    id                        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    requester_id              BIGINT NOT NULL REFERENCES users (id),
    record_id                 BIGINT NOT NULL REFERENCES records (id),
    status                    TEXT NOT NULL CHECK (status IN ('PENDING', 'APPROVED', 'ISSUED', 'DENIED', 'EXPIRED',
                                  'RELEASED', 'RENEWAL_PENDING', 'REQUIRES_TRIAGE', 'UNFULFILLABLE')),
    justification             TEXT NOT NULL,
    ticket_id                 TEXT,
    requested_duration_secs   BIGINT NOT NULL CHECK (requested_duration_secs > 0),
    approved_duration_secs    BIGINT,
    break_glass               BOOLEAN NOT NULL DEFAULT FALSE,
    required_approvals        INTEGER NOT NULL DEFAULT 1,
    policy_version            TEXT,
    decided_by                BIGINT REFERENCES users (id),
    decided_at                TIMESTAMPTZ,
    decision_reason           TEXT,
    lease_started_at          TIMESTAMPTZ,
    lease_expires_at          TIMESTAMPTZ,
    ended_at                  TIMESTAMPTZ,
    issuance_token_hash       TEXT CHECK (issuance_token_hash IS NULL OR issuance_token_hash ~ '^[0-9a-f]{64}$'),
    issuance_token_expires_at TIMESTAMPTZ,
    issuance_count            INTEGER NOT NULL DEFAULT 0 CHECK (issuance_count >= 0),
    max_issuances             INTEGER NOT NULL DEFAULT 3 CHECK (max_issuances >= 0),
    extension_count           INTEGER NOT NULL DEFAULT 0,
    renewal_duration_secs     BIGINT,
    preflight_attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at           TIMESTAMPTZ,
    created_at                TIMESTAMPTZ NOT NULL,
    updated_at                TIMESTAMPTZ NOT NULL,
    CHECK (issuance_count <= max_issuances)
);
CREATE INDEX requests_requester_idx ON requests (requester_id, created_at DESC);
CREATE INDEX requests_status_idx ON requests (status);
CREATE INDEX requests_lease_expiry_idx ON requests (lease_expires_at) WHERE status IN ('APPROVED', 'ISSUED', 'RENEWAL_PENDING');

-- One row per approver decision (quorum: N of M, staged).
CREATE TABLE request_approvals (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id  BIGINT NOT NULL REFERENCES requests (id),
    approver_id BIGINT NOT NULL REFERENCES users (id),
    stage       INTEGER NOT NULL DEFAULT 1,
    decision    TEXT NOT NULL CHECK (decision IN ('APPROVE', 'DENY')),
    comment     TEXT,
    decided_at  TIMESTAMPTZ NOT NULL,
    UNIQUE (request_id, approver_id)
);

-- INV-5: the share URL itself is never stored; only its SHA-256 and the vault's share id.
CREATE TABLE issuance_events (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id      BIGINT NOT NULL REFERENCES requests (id),
    share_link_hash TEXT NOT NULL CHECK (share_link_hash ~ '^[0-9a-f]{64}$'),
    vault_share_id  TEXT NOT NULL,
    client_ip       TEXT,
    user_agent      TEXT,
    issued_at       TIMESTAMPTZ NOT NULL,
    expires_at      TIMESTAMPTZ NOT NULL,
    revoked_at      TIMESTAMPTZ,
    revoke_attempts INTEGER NOT NULL DEFAULT 0,
    last_revoke_error TEXT
);
CREATE INDEX issuance_events_outstanding_idx ON issuance_events (request_id) WHERE revoked_at IS NULL;

-- INV-2: insert-only, hash-chained (seq, prev_hash, hash).
CREATE TABLE audit_events (
    seq        BIGINT PRIMARY KEY,
    event_id   UUID NOT NULL UNIQUE,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    request_id BIGINT,
    record_id  BIGINT,
    detail     JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
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
    signed_at  TIMESTAMPTZ NOT NULL,
    key_id     TEXT NOT NULL,
    algorithm  TEXT NOT NULL,
    signature  TEXT NOT NULL
);

CREATE TABLE governance_decision_traces (
    id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id         BIGINT REFERENCES requests (id),
    stage              TEXT NOT NULL CHECK (stage IN ('REQUEST_SUBMISSION', 'AUTHORITY_RESOLUTION', 'APPROVAL_DECISION',
                           'ISSUANCE_CHECK', 'ISSUANCE_EVENT', 'REVOCATION_EVENT')),
    outcome            TEXT NOT NULL CHECK (outcome IN ('ALLOW', 'DENY', 'PENDING')),
    reasons            JSONB NOT NULL,
    constraints        JSONB NOT NULL,
    required_approvals JSONB NOT NULL,
    trace              JSONB NOT NULL,
    inputs             JSONB NOT NULL,
    inputs_hash        TEXT NOT NULL,
    policy_version     TEXT NOT NULL,
    code_version       TEXT NOT NULL,
    created_at         TIMESTAMPTZ NOT NULL
);
CREATE INDEX traces_request_idx ON governance_decision_traces (request_id);

CREATE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'INV-2: % is insert-only (% refused)', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$;
CREATE TRIGGER audit_events_insert_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
CREATE TRIGGER traces_insert_only BEFORE UPDATE OR DELETE ON governance_decision_traces
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER traces_no_truncate BEFORE TRUNCATE ON governance_decision_traces
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
CREATE TRIGGER audit_checkpoints_insert_only BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION refuse_change();

CREATE TABLE notifications (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     BIGINT NOT NULL REFERENCES users (id),
    request_id  BIGINT REFERENCES requests (id),
    kind        TEXT NOT NULL,
    payload     JSONB NOT NULL,
    status      TEXT NOT NULL DEFAULT 'PENDING' CHECK (status IN ('PENDING', 'SENT', 'FAILED')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT,
    created_at  TIMESTAMPTZ NOT NULL,
    sent_at     TIMESTAMPTZ
);
CREATE INDEX notifications_pending_idx ON notifications (created_at) WHERE status = 'PENDING';

CREATE TABLE user_permission_cache (
    user_id     BIGINT PRIMARY KEY REFERENCES users (id),
    permissions JSONB NOT NULL,
    resolved_at TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE governance_probe_events (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    command_id  TEXT NOT NULL,
    invoked_by  TEXT NOT NULL,
    invoked_at  TIMESTAMPTZ NOT NULL,
    exit_code   INTEGER NOT NULL,
    fresh       BOOLEAN NOT NULL,
    degraded    BOOLEAN NOT NULL,
    duration_ms BIGINT NOT NULL,
    detail      JSONB NOT NULL
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
    reference         JSONB NOT NULL,
    updated_at        TIMESTAMPTZ NOT NULL
);
CREATE INDEX conversation_refs_personal_idx ON conversation_references (aad_object_id) WHERE conversation_type = 'personal';

-- Every card the bot sent about a request, so every copy can be updated in place.
CREATE TABLE sent_cards (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id        BIGINT NOT NULL REFERENCES requests (id),
    recipient_user_id BIGINT REFERENCES users (id),
    conversation_id   TEXT NOT NULL,
    activity_id       TEXT NOT NULL,
    card_kind         TEXT NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL,
    updated_at        TIMESTAMPTZ NOT NULL,
    UNIQUE (conversation_id, activity_id)
);
CREATE INDEX sent_cards_request_idx ON sent_cards (request_id);

CREATE TABLE otp_challenges (
    id            UUID PRIMARY KEY,
    request_id    BIGINT NOT NULL REFERENCES requests (id),
    user_id       BIGINT NOT NULL REFERENCES users (id),
    channel       TEXT NOT NULL CHECK (channel IN ('SMS', 'TOTP')),
    code_hash     TEXT CHECK (code_hash IS NULL OR code_hash ~ '^[0-9a-f]{64}$'),
    attempts      INTEGER NOT NULL DEFAULT 0,
    max_attempts  INTEGER NOT NULL DEFAULT 5,
    created_at    TIMESTAMPTZ NOT NULL,
    expires_at    TIMESTAMPTZ NOT NULL,
    last_sent_at  TIMESTAMPTZ,
    consumed_at   TIMESTAMPTZ,
    locked_at     TIMESTAMPTZ
);
CREATE INDEX otp_challenges_request_idx ON otp_challenges (request_id);

-- Teams redelivers activities it thinks failed: (conversation, activity) is processed once.
CREATE TABLE processed_activities (
    conversation_id TEXT NOT NULL,
    activity_id     TEXT NOT NULL,
    processed_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (conversation_id, activity_id)
);
CREATE INDEX processed_activities_age_idx ON processed_activities (processed_at);

-- Lease on a unit of scheduled work, so several instances never run the same unit at once.
CREATE TABLE job_claims (
    job_name     TEXT NOT NULL,
    claim_key    TEXT NOT NULL,
    holder       TEXT NOT NULL,
    claimed_at   TIMESTAMPTZ NOT NULL,
    lease_until  TIMESTAMPTZ NOT NULL,
    completed_at TIMESTAMPTZ,
    PRIMARY KEY (job_name, claim_key)
);
