-- #19.2: access review campaigns. A campaign (one per cron fire, or one per `admin review start`)
-- gives every record with authorities in force one review; its OWNERs keep or remove each row.
-- `fire_key` makes a re-run of the same fire create nothing twice. Decisions are append-only
-- (INV-2 style triggers, like the audit tables): a decided row is never changed or taken back.

CREATE TABLE review_campaigns (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    fire_key    TEXT NOT NULL UNIQUE,
    started_by  TEXT NOT NULL,
    period_from TIMESTAMPTZ NOT NULL,
    period_to   TIMESTAMPTZ NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);

-- One record's review in a campaign. `items` is the snapshot of the rows to decide (authority
-- rows, break-glass uses awaiting their review), `lease_holders` who held leases in the period.
CREATE TABLE access_reviews (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    campaign_id   BIGINT NOT NULL REFERENCES review_campaigns (id),
    record_id     BIGINT NOT NULL REFERENCES records (id),
    items         JSONB NOT NULL,
    lease_holders JSONB NOT NULL,
    status        TEXT NOT NULL DEFAULT 'OPEN' CHECK (status IN ('OPEN', 'CLOSED', 'SUPERSEDED')),
    created_at    TIMESTAMPTZ NOT NULL,
    reminded_at   TIMESTAMPTZ,
    escalated_at  TIMESTAMPTZ,
    closed_at     TIMESTAMPTZ,
    UNIQUE (campaign_id, record_id)
);
CREATE INDEX access_reviews_open_idx ON access_reviews (created_at) WHERE status = 'OPEN';

CREATE TABLE review_decisions (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    review_id       BIGINT NOT NULL REFERENCES access_reviews (id),
    item_kind       TEXT NOT NULL CHECK (item_kind IN ('AUTHORITY', 'BREAK_GLASS')),
    item_id         BIGINT NOT NULL,
    decision        TEXT NOT NULL CHECK (decision IN ('KEEP', 'REMOVE')),
    decided_by      BIGINT REFERENCES users (id),
    decided_by_name TEXT NOT NULL,
    decided_at      TIMESTAMPTZ NOT NULL,
    UNIQUE (review_id, item_kind, item_id)
);
-- A break-glass use is reviewed once, whichever campaign lists it.
CREATE UNIQUE INDEX review_decisions_break_glass_once ON review_decisions (item_id) WHERE item_kind = 'BREAK_GLASS';

CREATE TRIGGER review_decisions_insert_only BEFORE UPDATE OR DELETE ON review_decisions
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER review_decisions_no_truncate BEFORE TRUNCATE ON review_decisions
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

-- Every review card the bot sent, so every copy can be updated in place after a decision.
CREATE TABLE review_cards (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    review_id         BIGINT NOT NULL REFERENCES access_reviews (id),
    recipient_user_id BIGINT NOT NULL REFERENCES users (id),
    conversation_id   TEXT NOT NULL,
    activity_id       TEXT NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL,
    UNIQUE (conversation_id, activity_id)
);
CREATE INDEX review_cards_review_idx ON review_cards (review_id);
