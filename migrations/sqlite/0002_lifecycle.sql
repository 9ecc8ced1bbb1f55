-- The request lifecycle (#6): scheduler claims on requests, break-glass review, reminders and
-- warnings sent once, the policy's second-factor constraint, and a record of every job run.

-- A scheduler instance claims due work on a request until claim_until (INV-7): another instance
-- skips the row while the claim is live.
ALTER TABLE requests ADD COLUMN claimed_by TEXT;
ALTER TABLE requests ADD COLUMN claim_until TEXT;
-- Break-glass: approved at once, reviewed afterwards.
ALTER TABLE requests ADD COLUMN review_required INTEGER NOT NULL DEFAULT 0;
-- The policy asked for a second factor at retrieval (#8 enforces it).
ALTER TABLE requests ADD COLUMN otp_required INTEGER NOT NULL DEFAULT 0;
-- Retrievals between "token used" and "share recorded": counted against max_issuances, so the
-- vault never holds more shares than a request may have (INV-4), even for a moment.
ALTER TABLE requests ADD COLUMN issuances_in_flight INTEGER NOT NULL DEFAULT 0 CHECK (issuances_in_flight >= 0);
-- Sent once each: the approvers' reminder, the requester's "expires soon" warning.
ALTER TABLE requests ADD COLUMN reminded_at TEXT;
ALTER TABLE requests ADD COLUMN expiry_warned_at TEXT;
CREATE INDEX requests_next_attempt_idx ON requests (next_attempt_at) WHERE status = 'APPROVED';

-- INV-5: a share id is never the URL itself.
CREATE TRIGGER issuance_events_no_url BEFORE INSERT ON issuance_events
WHEN NEW.vault_share_id LIKE 'http://%' OR NEW.vault_share_id LIKE 'https://%'
BEGIN
    SELECT RAISE(ABORT, 'INV-5: a share URL is never stored');
END;

CREATE TABLE job_runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    job_name    TEXT NOT NULL,
    holder      TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    ok          INTEGER NOT NULL,
    counts      TEXT NOT NULL,
    error       TEXT
);
CREATE INDEX job_runs_job_idx ON job_runs (job_name, started_at DESC);
