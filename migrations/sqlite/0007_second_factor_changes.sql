-- Trust holes (#14.1, #14.2): changing the second factor needs proof of the one on file, and wrong
-- codes are capped per person over a rolling hour, across challenges and channels.

-- Every wrong second-factor code (a retrieval challenge's, or a proof code's for a factor change),
-- for the per-person cap. Housekeeping forgets rows older than a day.
CREATE TABLE otp_failures (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id BIGINT NOT NULL REFERENCES users (id),
    at      TEXT NOT NULL
);
CREATE INDEX otp_failures_user_idx ON otp_failures (user_id, at);

-- When admins were last alerted that this person reached the cap: one alert per hour at most.
CREATE TABLE otp_cap_alerts (
    user_id    BIGINT PRIMARY KEY REFERENCES users (id),
    alerted_at TEXT NOT NULL
);

-- A code texted to the number on file, proving the person holds it before their authenticator is
-- set up, replaced or removed. Only the keyed hash of the code is kept.
CREATE TABLE factor_proofs (
    id           BLOB PRIMARY KEY,
    user_id      BIGINT NOT NULL REFERENCES users (id),
    purpose      TEXT NOT NULL CHECK (purpose IN ('ENROLL', 'REMOVE')),
    code_hash    TEXT NOT NULL CHECK (code_hash GLOB '[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]'),
    attempts     INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    created_at   TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    consumed_at  TEXT,
    locked_at    TEXT
);
CREATE INDEX factor_proofs_user_idx ON factor_proofs (user_id, created_at);

-- An admin's one-time permission to set up an authenticator without a factor on file (someone with
-- neither a phone number nor a working app). One open invitation per person; its history is in
-- the audit trail. Nothing secret: the person's own sign-in is what redeems it.
CREATE TABLE totp_invitations (
    user_id    BIGINT PRIMARY KEY REFERENCES users (id),
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at    TEXT
);

-- Enrollments started before proof was required were started by whoever held a session: they are
-- forgotten, so that only a proven start can be confirmed.
DELETE FROM totp_enrollments WHERE confirmed_at IS NULL;
