-- The audit sequencer (#20.2): a change's transaction inserts its audit event unlinked (seq,
-- prev_hash and hash NULL) without locking the chain head, so commits no longer queue behind each
-- other; the linker (one pass at a time, `pg_advisory_xact_lock`) later gives committed events
-- their seq and hashes in `link_order` order and moves the head.
--
-- Every existing event is linked already: it keeps its seq, and its insertion order is its seq.
DROP TRIGGER audit_events_insert_only ON audit_events;

ALTER TABLE audit_events ADD COLUMN link_order BIGINT;
UPDATE audit_events SET link_order = seq;
ALTER TABLE audit_events DROP CONSTRAINT audit_events_pkey;
ALTER TABLE audit_events ALTER COLUMN link_order SET NOT NULL;
ALTER TABLE audit_events ADD PRIMARY KEY (link_order);
ALTER TABLE audit_events ALTER COLUMN link_order ADD GENERATED ALWAYS AS IDENTITY;
SELECT setval(pg_get_serial_sequence('audit_events', 'link_order'),
              COALESCE((SELECT MAX(link_order) FROM audit_events), 0) + 1, false);

ALTER TABLE audit_events
    ALTER COLUMN seq DROP NOT NULL,
    ALTER COLUMN prev_hash DROP NOT NULL,
    ALTER COLUMN hash DROP NOT NULL;
ALTER TABLE audit_events ADD CONSTRAINT audit_events_seq_key UNIQUE (seq);
-- Linked means all three set; unlinked, none.
ALTER TABLE audit_events ADD CONSTRAINT audit_events_linked_whole
    CHECK ((seq IS NULL) = (prev_hash IS NULL) AND (seq IS NULL) = (hash IS NULL));
-- What the linker reads: the unlinked events, in insertion order.
CREATE INDEX audit_events_unlinked_idx ON audit_events (link_order) WHERE seq IS NULL;

-- INV-2 with one transition: an event is inserted unlinked, and linked once — seq, prev_hash and
-- hash from NULL to values, every other column unchanged. A linked event never changes again;
-- deleting and truncating stay refused (`audit_events_no_truncate` from 0001 is kept).
CREATE FUNCTION audit_events_insert_unlinked() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.seq IS NOT NULL OR NEW.prev_hash IS NOT NULL OR NEW.hash IS NOT NULL THEN
        RAISE EXCEPTION 'INV-2: audit_events are inserted unlinked; only the linker gives them seq and hashes'
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER audit_events_insert_unlinked BEFORE INSERT ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_insert_unlinked();

CREATE FUNCTION audit_events_link_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.seq IS NULL AND OLD.prev_hash IS NULL AND OLD.hash IS NULL
       AND NEW.seq IS NOT NULL AND NEW.prev_hash IS NOT NULL AND NEW.hash IS NOT NULL
       AND NEW.link_order IS NOT DISTINCT FROM OLD.link_order
       AND NEW.event_id IS NOT DISTINCT FROM OLD.event_id
       AND NEW.actor IS NOT DISTINCT FROM OLD.actor
       AND NEW.action IS NOT DISTINCT FROM OLD.action
       AND NEW.request_id IS NOT DISTINCT FROM OLD.request_id
       AND NEW.record_id IS NOT DISTINCT FROM OLD.record_id
       AND NEW.detail IS NOT DISTINCT FROM OLD.detail
       AND NEW.created_at IS NOT DISTINCT FROM OLD.created_at THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'INV-2: audit_events is insert-only; an event is only linked, once (UPDATE refused)'
        USING ERRCODE = 'restrict_violation';
END;
$$;
CREATE TRIGGER audit_events_link_once BEFORE UPDATE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_link_once();
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
