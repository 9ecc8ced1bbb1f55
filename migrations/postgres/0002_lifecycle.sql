-- The request lifecycle (#6): scheduler claims on requests, break-glass review, reminders and
-- warnings sent once, the policy's second-factor constraint, and a record of every job run.

-- A scheduler instance claims due work on a request until claim_until (INV-7): another instance
-- skips the row while the claim is live (and FOR UPDATE SKIP LOCKED while it is being claimed).
ALTER TABLE requests ADD COLUMN claimed_by TEXT;
ALTER TABLE requests ADD COLUMN claim_until TIMESTAMPTZ;
-- Break-glass: approved at once, reviewed afterwards.
ALTER TABLE requests ADD COLUMN review_required BOOLEAN NOT NULL DEFAULT FALSE;
-- The policy asked for a second factor at retrieval (#8 enforces it).
ALTER TABLE requests ADD COLUMN otp_required BOOLEAN NOT NULL DEFAULT FALSE;
-- Retrievals between "token used" and "share recorded": counted against max_issuances, so the
-- vault never holds more shares than a request may have (INV-4), even for a moment.
ALTER TABLE requests ADD COLUMN issuances_in_flight INTEGER NOT NULL DEFAULT 0 CHECK (issuances_in_flight >= 0);
-- Sent once each: the approvers' reminder, the requester's "expires soon" warning.
ALTER TABLE requests ADD COLUMN reminded_at TIMESTAMPTZ;
ALTER TABLE requests ADD COLUMN expiry_warned_at TIMESTAMPTZ;
CREATE INDEX requests_next_attempt_idx ON requests (next_attempt_at) WHERE status = 'APPROVED';

-- INV-5: a share id is never the URL itself.
ALTER TABLE issuance_events ADD CONSTRAINT issuance_events_no_url CHECK (vault_share_id !~* '^https?://');

CREATE TABLE job_runs (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_name    TEXT NOT NULL,
    holder      TEXT NOT NULL,
    started_at  TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ NOT NULL,
    ok          BOOLEAN NOT NULL,
    counts      JSONB NOT NULL,
    error       TEXT
);
CREATE INDEX job_runs_job_idx ON job_runs (job_name, started_at DESC);
