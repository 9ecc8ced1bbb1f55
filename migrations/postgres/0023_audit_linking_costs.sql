-- What linking costs on Postgres (#20.3): a link pass reads only the events it links, whatever
-- the statistics say. (The INV-2 triggers of 0022 stay as they are: their rule is written once,
-- in the functions that raise.)
--
-- The `seq` index holds linked events only (#20.3). As a UNIQUE constraint it also held a NULL
-- entry for every unlinked event, and the link pass's read (`WHERE seq IS NULL ORDER BY
-- link_order LIMIT n`) could be planned on it: with statistics taken while few events were
-- unlinked, Postgres fetched *every* unlinked event through it and sorted them, on each pass —
-- linking 200,000 events of an expiry run took 39 s. A partial unique index keeps seq unique
-- among linked events (NULLs never conflicted anyway) and cannot serve `seq IS NULL`, so the
-- only index that can is `audit_events_unlinked_idx`, which stops after n rows. An insert also
-- writes one index entry fewer.
ALTER TABLE audit_events DROP CONSTRAINT audit_events_seq_key;
CREATE UNIQUE INDEX audit_events_seq_key ON audit_events (seq) WHERE seq IS NOT NULL;

-- The link pass's read: the first n unlinked events in insertion order. Only an ordered walk of
-- `audit_events_unlinked_idx` stops after n rows; with the same stale statistics Postgres
-- preferred a bitmap scan of the whole index and a sort. The function plans its query with
-- sorting ruled out, so that walk is the plan whatever the statistics say. STABLE: it reads
-- with the calling statement's snapshot (the linker takes its lock first, then reads). PL/pgSQL
-- rather than SQL so the plan is kept for the session (a SQL function is planned on every call).
CREATE FUNCTION audit_unlinked_events(n BIGINT)
RETURNS TABLE (link_order BIGINT, event_id UUID, actor TEXT, action TEXT, request_id BIGINT,
               record_id BIGINT, detail JSONB, created_at TIMESTAMPTZ)
LANGUAGE plpgsql STABLE
SET enable_sort = off
SET enable_bitmapscan = off
AS $$
BEGIN
    RETURN QUERY
    SELECT e.link_order, e.event_id, e.actor, e.action, e.request_id, e.record_id, e.detail, e.created_at
    FROM audit_events e WHERE e.seq IS NULL ORDER BY e.link_order LIMIT n;
END;
$$;

-- The link pass's write: links the listed events (their link_order, seq, prev hash and hash, as
-- arrays) that are still unlinked, and moves the head to (head_seq, head_hash) only if every one
-- was; answers how many were linked, or NULL when the head did not move (the caller then refuses
-- to commit half a pass). Planned with sequential scans, bitmap scans and nested loops ruled out:
-- the listed events are fetched by index (`link_order = ANY(orders)`) and hash-joined with the
-- arrays. With the same stale statistics Postgres read every unlinked event (or the whole table)
-- to hash-join the 500 of a pass, or, told only to use the index, unnested the arrays again for
-- each of the 500 rows.
CREATE FUNCTION audit_link_events(orders BIGINT[], seqs BIGINT[], prev_hashes TEXT[], hashes TEXT[],
                                  head_seq BIGINT, head_hash TEXT)
RETURNS BIGINT
LANGUAGE plpgsql VOLATILE
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_nestloop = off
AS $$
DECLARE
    linked_count BIGINT;
BEGIN
    WITH linked AS (
        UPDATE audit_events e SET seq = l.seq, prev_hash = l.prev_hash, hash = l.hash
        FROM UNNEST(orders, seqs, prev_hashes, hashes) AS l(link_order, seq, prev_hash, hash)
        WHERE e.link_order = ANY(orders) AND e.link_order = l.link_order AND e.seq IS NULL
        RETURNING 1
    )
    UPDATE audit_chain_head SET seq = head_seq, hash = head_hash
    WHERE id = 1 AND (SELECT COUNT(*) FROM linked) = cardinality(orders)
    RETURNING (SELECT COUNT(*) FROM linked) INTO linked_count;
    RETURN linked_count;
END;
$$;
