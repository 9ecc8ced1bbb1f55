-- #21.2: a person's mail and UPN come from the directory (the Bot Connector's member lookup or
-- Graph) on first contact and again once stale. This is when it was last asked, and whether that
-- ask failed (a failed ask is retried sooner than a successful one is refreshed). NULL: never
-- asked, so the next turn asks.
ALTER TABLE users ADD COLUMN directory_checked_at TEXT;
ALTER TABLE users ADD COLUMN directory_check_failed INTEGER NOT NULL DEFAULT 0
    CHECK (directory_check_failed IN (0, 1));
