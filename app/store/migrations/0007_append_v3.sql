-- 0007: atelier_append, third version (0003 stays as it was applied; this replaces
-- the function). Same signature, same results, same plans for the protocol itself;
-- one change, for the partitioned events of 0006:
--
-- * The final result names events only when the batch has a duplicate. Each run of
--   a cached generic plan locks every relation the plan names; on a partitioned
--   table that is every partition and every index it might probe, whether or not a
--   row is looked up. 0003's result statement probed events for duplicates only,
--   but still took those locks on every call: 51 relation locks per append instead
--   of 12 before partitioning (31 of them past the 16 fast-path slots, in the shared
--   lock table). Now an append without duplicates locks the parent and the
--   partitions its rows go to. Measured with pg_locks inside a transaction; see
--   docs/eventstore.md "Partitioning".

CREATE OR REPLACE FUNCTION atelier_append(
    p_doc_ids  text[],
    p_expected bigint[],
    p_actors   text[],
    p_op_ids   text[],
    p_kinds    text[],
    p_ops      bytea[],
    p_effects  bytea[]
) RETURNS TABLE (status text, v bigint, "position" bigint, ts bigint)
LANGUAGE plpgsql VOLATILE
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
AS $$
#variable_conflict use_column
DECLARE
    n           integer := coalesce(array_length(p_doc_ids, 1), 0);
    out_status  text[]  := array_fill(NULL::text, ARRAY[n]);
    out_v       bigint[] := array_fill(NULL::bigint, ARRAY[n]);
    locked_ids  text[];
    locked_vs   bigint[];
    r           record;
    cur_doc     text;
    cur_v       bigint;
    failed      boolean := false;
    n_ok        integer := 0;
    base        bigint := 0;
    commit_ts   timestamptz;
BEGIN
    IF n = 0 THEN
        RETURN;
    END IF;
    IF coalesce(array_length(p_expected, 1), 0) <> n
       OR coalesce(array_length(p_actors, 1), 0) <> n
       OR coalesce(array_length(p_op_ids, 1), 0) <> n
       OR coalesce(array_length(p_kinds, 1), 0) <> n
       OR coalesce(array_length(p_ops, 1), 0) <> n
       OR coalesce(array_length(p_effects, 1), 0) <> n THEN
        RAISE EXCEPTION 'atelier_append: the argument arrays differ in length'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- (a) Lock every document of the batch, in id order. Every append and every
    -- create holds its documents' locks until commit, so two processes taking
    -- overlapping sets always queue in the same order and cannot deadlock. The values
    -- come from the locked rows themselves (the lock returns the latest committed
    -- version after waiting), never from an earlier snapshot: a version read without
    -- the lock could be stale by the time we write (I2). FOR NO KEY UPDATE, not FOR
    -- UPDATE: it serializes appenders all the same, but does not block the foreign-key
    -- checks of members, snapshots and named_versions (FOR KEY SHARE), so saving a
    -- snapshot or adding a member never waits for an append to commit.
    SELECT array_agg(d.id), array_agg(d.v)
      INTO locked_ids, locked_vs
      FROM (SELECT doc.id, doc.v
              FROM documents AS doc
             WHERE doc.id = ANY (p_doc_ids)
             ORDER BY doc.id
               FOR NO KEY UPDATE) AS d;

    -- (b, c) Decide each request, one document at a time, in request order within a
    -- document. This statement takes a new snapshot, after the locks: every earlier
    -- append to these documents has committed, so its op_ledger rows are visible and
    -- the duplicate check cannot race (I3). The ledger is probed by primary key, one
    -- request at a time (a join could hash the whole ledger). first_idx finds a repeat
    -- of an op id inside this batch.
    FOR r IN
        SELECT q.idx::integer AS idx,
               q.expected_v,
               q.doc_id,
               d.v AS doc_v,
               CASE WHEN q.op_id IS NOT NULL THEN
                   (SELECT l.v FROM op_ledger AS l
                     WHERE l.doc_id = q.doc_id AND l.user_id = q.actor AND l.op_id = q.op_id)
               END AS ledger_v,
               CASE WHEN q.op_id IS NOT NULL THEN
                   (first_value(q.idx) OVER (PARTITION BY q.doc_id, q.actor, q.op_id
                                             ORDER BY q.idx))::integer
               END AS first_idx
          FROM unnest(p_doc_ids, p_expected, p_actors, p_op_ids)
               WITH ORDINALITY AS q(doc_id, expected_v, actor, op_id, idx)
          LEFT JOIN unnest(locked_ids, locked_vs) AS d(id, v) ON d.id = q.doc_id
         ORDER BY q.doc_id, q.idx
    LOOP
        IF cur_doc IS DISTINCT FROM r.doc_id THEN
            cur_doc := r.doc_id;
            cur_v := r.doc_v;
            failed := false;
        END IF;

        IF cur_v IS NULL THEN
            out_status[r.idx] := 'missing';
            out_v[r.idx] := 0;
        ELSIF r.ledger_v IS NOT NULL THEN
            -- I3: stored before (in an earlier transaction): the first outcome, nothing
            -- stored, whatever this request carries. Later requests of this document
            -- in the batch were decided on a state that assumed this one applies: they
            -- conflict.
            out_status[r.idx] := 'duplicate';
            out_v[r.idx] := r.ledger_v;
            failed := true;
        ELSIF r.first_idx < r.idx AND out_status[r.first_idx] IN ('ok', 'duplicate') THEN
            -- I3 inside one batch: the same op id twice.
            out_status[r.idx] := 'duplicate';
            out_v[r.idx] := out_v[r.first_idx];
            failed := true;
        ELSIF failed OR r.expected_v IS DISTINCT FROM cur_v THEN
            -- Optimistic concurrency (I2): the request was decided on version
            -- expected_v, the document is at cur_v. Once a request of a document fails,
            -- the rest of its chain fails too: each was decided on the state the
            -- failed one would have produced.
            out_status[r.idx] := 'conflict';
            out_v[r.idx] := cur_v;
            failed := true;
        ELSE
            cur_v := cur_v + 1;
            out_status[r.idx] := 'ok';
            out_v[r.idx] := cur_v;
            n_ok := n_ok + 1;
        END IF;
    END LOOP;

    IF n_ok > 0 THEN
        -- (d) The ledger rows, before positions are taken: the shorter the section
        -- that holds log_head, the faster every writer goes.
        INSERT INTO op_ledger (doc_id, user_id, op_id, v)
        SELECT q.doc_id, q.actor, q.op_id, q.v
          FROM unnest(p_doc_ids, p_actors, p_op_ids, out_v, out_status)
               AS q(doc_id, actor, op_id, v, status)
         WHERE q.status = 'ok' AND q.op_id IS NOT NULL;

        -- (e) THE LAST STATEMENT: take n_ok positions from log_head and write the
        -- events and the documents' new versions with them. The row lock on log_head
        -- is held from here to COMMIT, so the next transaction's positions are
        -- assigned only after this one is visible: positions are dense (a rollback
        -- undoes its bump too) and follow commit order, and a reader reading "after
        -- p" can never skip a row that commits late (DESIGN.md, "Global order").
        -- Everything that can fail for a reason of its own (locks, checks, ledger)
        -- happened above, outside this section. ts is read once, after the lock, so
        -- it never decreases along positions; every row of the batch shares it.
        WITH head AS (
            UPDATE log_head AS h
               SET last_position = h.last_position + n_ok
             WHERE h.id = 1
            RETURNING h.last_position - n_ok AS base, clock_timestamp() AS at
        ), ok AS (
            SELECT q.doc_id, q.v, q.kind, q.op, q.effect, q.actor, q.op_id,
                   row_number() OVER (ORDER BY q.idx) AS k
              FROM unnest(p_doc_ids, out_v, out_status, p_kinds, p_ops, p_effects,
                          p_actors, p_op_ids)
                   WITH ORDINALITY AS q(doc_id, v, status, kind, op, effect, actor, op_id, idx)
             WHERE q.status = 'ok'
        ), new_events AS (
            INSERT INTO events (position, doc_id, v, kind, op, effect, actor, op_id, ts)
            SELECT head.base + ok.k, ok.doc_id, ok.v, ok.kind, ok.op, ok.effect,
                   ok.actor, ok.op_id, head.at
              FROM head, ok
        ), moved AS (
            UPDATE documents AS doc
               SET v = g.v,
                   last_position = head.base + g.k,
                   updated_at = head.at,
                   created_at = CASE WHEN doc.v = 0 THEN head.at ELSE doc.created_at END
              FROM head,
                   (SELECT ok.doc_id, max(ok.v) AS v, max(ok.k) AS k
                      FROM ok GROUP BY ok.doc_id) AS g
             WHERE doc.id = g.doc_id
        )
        SELECT head.base, head.at INTO base, commit_ts FROM head;

        -- Wakes the log followers; delivered at commit, in commit order.
        PERFORM pg_notify('atelier_log', (base + n_ok)::text);
    END IF;

    -- Duplicates are rare: their stored events are looked up only for them, in a
    -- statement of its own. events is partitioned (0006), and running the generic
    -- plan of a statement that names it locks all its partitions and their indexes
    -- (about 40 locks, most beyond the backend's 16 fast-path slots), even when no
    -- row is looked up; so the common return, with no duplicate, does not name it.
    IF 'duplicate' = ANY (out_status) THEN
        RETURN QUERY
        SELECT q.status,
               q.v,
               CASE q.status
                   WHEN 'ok' THEN base + count(*) FILTER (WHERE q.status = 'ok')
                                          OVER (ORDER BY q.idx)
                   WHEN 'duplicate' THEN stored.position
                   ELSE 0
               END::bigint,
               CASE q.status
                   WHEN 'ok' THEN atelier_ms(commit_ts)
                   WHEN 'duplicate' THEN atelier_ms(stored.ts)
                   ELSE 0
               END::bigint
          FROM unnest(p_doc_ids, out_status, out_v) WITH ORDINALITY AS q(doc_id, status, v, idx)
          LEFT JOIN LATERAL (
                SELECT ev.position, ev.ts FROM events AS ev
                 WHERE q.status = 'duplicate' AND ev.doc_id = q.doc_id AND ev.v = q.v
               ) AS stored ON true
         ORDER BY q.idx;
    ELSE
        RETURN QUERY
        SELECT q.status,
               q.v,
               CASE q.status
                   WHEN 'ok' THEN base + count(*) FILTER (WHERE q.status = 'ok')
                                          OVER (ORDER BY q.idx)
                   ELSE 0
               END::bigint,
               CASE q.status WHEN 'ok' THEN atelier_ms(commit_ts) ELSE 0 END::bigint
          FROM unnest(p_doc_ids, out_status, out_v) WITH ORDINALITY AS q(doc_id, status, v, idx)
         ORDER BY q.idx;
    END IF;
END
$$;
