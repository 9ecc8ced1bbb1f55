-- A link's lock and its read in one round trip (#20.2). A write committing alone links its own
-- events: it took the linker lock (`pg_try_advisory_xact_lock`) in one statement and read the
-- unlinked events with the chain head in the next, because the read must see what the previous
-- lock holder committed, and a statement's snapshot is taken before anything in it runs. A
-- VOLATILE PL/pgSQL function takes a fresh snapshot for each statement it runs (READ COMMITTED),
-- so here the read runs after the lock is granted, and sees the previous pass — in the same
-- round trip as the lock.
--
-- `lock_key`: the linker's advisory lock (`PgStore::LINKER_LOCK`). `wait`: wait for the lock (a
-- link pass) or give up at once (a write). No rows: nothing to link, or (only when not `wait`)
-- the lock is held elsewhere; either way a write leaves its events to the linker. Otherwise the
-- first `n` unlinked events in insertion order, each with the chain head.
CREATE FUNCTION audit_lock_and_read_unlinked(lock_key BIGINT, n BIGINT, wait BOOLEAN)
RETURNS TABLE (head_seq BIGINT, head_hash TEXT, link_order BIGINT, event_id UUID, actor TEXT,
               action TEXT, request_id BIGINT, record_id BIGINT, detail JSONB,
               created_at TIMESTAMPTZ)
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    IF wait THEN
        PERFORM pg_advisory_xact_lock(lock_key);
    ELSIF NOT pg_try_advisory_xact_lock(lock_key) THEN
        RETURN;
    END IF;
    RETURN QUERY
    SELECT h.seq, h.hash, e.link_order, e.event_id, e.actor, e.action, e.request_id, e.record_id,
           e.detail, e.created_at
    FROM audit_unlinked_events(n) e CROSS JOIN audit_chain_head h
    WHERE h.id = 1;
END;
$$;
