-- A turn claims its activity while it runs and marks it DONE only once it succeeded; a failed
-- turn drops its claim, and a crashed one's claim lapses at claimed_until, so Teams' redelivery
-- is processed, not dropped (#15.2). Rows recorded before this were finished turns.
ALTER TABLE processed_activities ADD COLUMN state TEXT NOT NULL DEFAULT 'DONE'
    CHECK (state IN ('IN_PROGRESS', 'DONE'));
ALTER TABLE processed_activities ADD COLUMN claimed_until TEXT;
ALTER TABLE processed_activities ADD COLUMN claim_token TEXT;
