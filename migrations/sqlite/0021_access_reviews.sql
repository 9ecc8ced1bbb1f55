-- #19.2: access review campaigns. A campaign (one per cron fire, or one per `admin review start`)
-- gives every record with authorities in force one review; its OWNERs keep or remove each row.
-- `fire_key` makes a re-run of the same fire create nothing twice. Decisions are append-only
-- (INV-2 style triggers, like the audit tables): a decided row is never changed or taken back.

CREATE TABLE review_campaigns (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    fire_key    TEXT NOT NULL UNIQUE,
    started_by  TEXT NOT NULL,
    period_from TEXT NOT NULL,
    period_to   TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

-- One record's review in a campaign. `items` is the snapshot of the rows to decide (authority
-- rows, break-glass uses awaiting their review), `lease_holders` who held leases in the period.
CREATE TABLE access_reviews (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    campaign_id   BIGINT NOT NULL REFERENCES review_campaigns (id),
    record_id     BIGINT NOT NULL REFERENCES records (id),
    items         TEXT NOT NULL,
    lease_holders TEXT NOT NULL,
    status        TEXT NOT NULL DEFAULT 'OPEN' CHECK (status IN ('OPEN', 'CLOSED', 'SUPERSEDED')),
    created_at    TEXT NOT NULL,
    reminded_at   TEXT,
    escalated_at  TEXT,
    closed_at     TEXT,
    UNIQUE (campaign_id, record_id)
);
CREATE INDEX access_reviews_open_idx ON access_reviews (created_at) WHERE status = 'OPEN';

CREATE TABLE review_decisions (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    review_id       BIGINT NOT NULL REFERENCES access_reviews (id),
    item_kind       TEXT NOT NULL CHECK (item_kind IN ('AUTHORITY', 'BREAK_GLASS')),
    item_id         BIGINT NOT NULL,
    decision        TEXT NOT NULL CHECK (decision IN ('KEEP', 'REMOVE')),
    decided_by      BIGINT REFERENCES users (id),
    decided_by_name TEXT NOT NULL,
    decided_at      TEXT NOT NULL,
    UNIQUE (review_id, item_kind, item_id)
);
-- A break-glass use is reviewed once, whichever campaign lists it.
CREATE UNIQUE INDEX review_decisions_break_glass_once ON review_decisions (item_id) WHERE item_kind = 'BREAK_GLASS';

CREATE TRIGGER review_decisions_no_update BEFORE UPDATE ON review_decisions
BEGIN
    SELECT RAISE(ABORT, 'INV-2: review_decisions is insert-only (UPDATE refused)');
END;
CREATE TRIGGER review_decisions_no_delete BEFORE DELETE ON review_decisions
BEGIN
    SELECT RAISE(ABORT, 'INV-2: review_decisions is insert-only (DELETE refused)');
END;

-- Every review card the bot sent, so every copy can be updated in place after a decision.
CREATE TABLE review_cards (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    review_id         BIGINT NOT NULL REFERENCES access_reviews (id),
    recipient_user_id BIGINT NOT NULL REFERENCES users (id),
    conversation_id   TEXT NOT NULL,
    activity_id       TEXT NOT NULL,
    created_at        TEXT NOT NULL,
    UNIQUE (conversation_id, activity_id)
);
CREATE INDEX review_cards_review_idx ON review_cards (review_id);
