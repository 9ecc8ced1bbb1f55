-- Second factor at retrieval (issue 8): people's phone numbers and TOTP enrollments, encrypted at
-- rest (crypto.rs envelopes: version byte 0x01 first, so a plaintext number can't be stored by
-- mistake), and what an OTP challenge needs beyond 0001's table.

CREATE TABLE user_phone_numbers (
    user_id      BIGINT PRIMARY KEY REFERENCES users (id),
    -- AES-256-GCM envelope of the E.164 number, associated data 'phone:user:<id>'.
    phone_sealed BLOB NOT NULL CHECK (length(phone_sealed) >= 30 AND substr(phone_sealed, 1, 1) = x'01'),
    source       TEXT NOT NULL CHECK (source IN ('GRAPH', 'ADMIN')),
    updated_at   TEXT NOT NULL
);

CREATE TABLE totp_enrollments (
    user_id            BIGINT PRIMARY KEY REFERENCES users (id),
    -- AES-256-GCM envelope of the 160-bit secret, associated data 'totp:user:<id>'.
    secret_sealed      BLOB NOT NULL CHECK (length(secret_sealed) >= 30 AND substr(secret_sealed, 1, 1) = x'01'),
    created_at         TEXT NOT NULL,
    confirmed_at       TEXT,
    -- The highest time step ever accepted: a code for it or an earlier step is a replay.
    last_accepted_step BIGINT
);

-- How many codes were sent for the challenge (the first send counts), for the resend cap.
ALTER TABLE otp_challenges ADD COLUMN send_count INTEGER NOT NULL DEFAULT 0;
-- SHA-256 of the issuance token the challenge was started with: the code only ever completes
-- that token's exchange.
ALTER TABLE otp_challenges ADD COLUMN token_hash TEXT
    CHECK (token_hash IS NULL OR token_hash GLOB '[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]');
CREATE INDEX otp_challenges_user_idx ON otp_challenges (user_id, created_at);
