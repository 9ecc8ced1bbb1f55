-- #21.6: the SMS provider refused Passkey's own credentials or configuration (HTTP 401/403,
-- Twilio 20003). One row per provider while the fault lasts: the instance that inserts it alerts
-- admins (once, whichever instance gets there first); a text that goes through deletes it.
-- `detail` is the HTTP status and the provider's error code only.
CREATE TABLE sms_credential_faults (
    provider      TEXT PRIMARY KEY,
    detail        TEXT NOT NULL,
    first_seen_at TEXT NOT NULL,
    last_seen_at  TEXT NOT NULL
);
