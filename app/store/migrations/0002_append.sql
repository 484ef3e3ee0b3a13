-- 0002: the append protocol as two functions, so that a group commit is ONE statement,
-- ONE transaction and ONE round trip when called in autocommit mode
-- (docs/eventstore.md, "The append protocol").

-- atelier_append: append a batch of requests (request i: version expected_v[i] + 1 of
-- doc_ids[i]) and return one row per request, in request order:
--   status 'ok'         stored at v, position, ts (epoch ms)
--          'duplicate'  (doc, actor, op_id) was stored before at v (I3); position and
--                       ts are those of the stored event
--          'conflict'   the document is at v, not at expected_v (or an earlier request
--                       of the same document in this batch did not succeed)
--          'missing'    no such document (v = 0)
-- A request that fails fails alone: requests of other documents still commit.
CREATE FUNCTION atelier_append(
    p_doc_ids  text[],
    p_expected bigint[],
    p_actors   text[],
    p_op_ids   text[],
    p_kinds    text[],
    p_ops      bytea[],
    p_effects  bytea[]
) RETURNS TABLE (status text, v bigint, "position" bigint, ts bigint)
LANGUAGE plpgsql VOLATILE
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
    -- come from the locked rows themselves (FOR UPDATE returns the latest committed
    -- version after waiting), never from an earlier snapshot: a version read without
    -- the lock could be stale by the time we write (I2).
    SELECT array_agg(d.id), array_agg(d.v)
      INTO locked_ids, locked_vs
      FROM (SELECT doc.id, doc.v
              FROM documents AS doc
             WHERE doc.id = ANY (p_doc_ids)
             ORDER BY doc.id
               FOR UPDATE) AS d;

    -- (b, c) Decide each request, one document at a time, in request order within a
    -- document. This statement takes a new snapshot, after the locks: every earlier
    -- append to these documents has committed, so its op_ledger rows are visible and
    -- the duplicate check cannot race (I3). first_idx finds a repeat of an op id
    -- inside this batch.
    FOR r IN
        SELECT q.idx::integer AS idx,
               q.expected_v,
               q.doc_id,
               d.v AS doc_v,
               l.v AS ledger_v,
               CASE WHEN q.op_id IS NOT NULL THEN
                   (first_value(q.idx) OVER (PARTITION BY q.doc_id, q.actor, q.op_id
                                             ORDER BY q.idx))::integer
               END AS first_idx
          FROM unnest(p_doc_ids, p_expected, p_actors, p_op_ids)
               WITH ORDINALITY AS q(doc_id, expected_v, actor, op_id, idx)
          LEFT JOIN unnest(locked_ids, locked_vs) AS d(id, v) ON d.id = q.doc_id
          LEFT JOIN op_ledger AS l
                 ON l.doc_id = q.doc_id AND l.user_id = q.actor AND l.op_id = q.op_id
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

    RETURN QUERY
    SELECT q.status,
           q.v,
           CASE q.status
               WHEN 'ok' THEN base + count(*) FILTER (WHERE q.status = 'ok')
                                      OVER (ORDER BY q.idx)
               WHEN 'duplicate' THEN e.position
               ELSE 0
           END::bigint,
           CASE q.status
               WHEN 'ok' THEN atelier_ms(commit_ts)
               WHEN 'duplicate' THEN atelier_ms(e.ts)
               ELSE 0
           END::bigint
      FROM unnest(p_doc_ids, out_status, out_v) WITH ORDINALITY AS q(doc_id, status, v, idx)
      LEFT JOIN events AS e
             ON q.status = 'duplicate' AND e.doc_id = q.doc_id AND e.v = q.v
     ORDER BY q.idx;
END
$$;

-- atelier_create_document: the document row, its owner and its first event (v = 1)
-- in one transaction, the event going through atelier_append so that positions stay
-- dense and in commit order like any other. Returns one row like atelier_append, or
-- status 'exists' when the id is taken (a concurrent creator of the same id waits on
-- the primary key and then sees it taken).
CREATE FUNCTION atelier_create_document(
    p_id     text,
    p_title  text,
    p_owner  text,
    p_actor  text,
    p_op_id  text,
    p_kind   text,
    p_op     bytea,
    p_effect bytea
) RETURNS TABLE (status text, v bigint, "position" bigint, ts bigint)
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_column
BEGIN
    INSERT INTO documents (id, title, owner) VALUES (p_id, p_title, p_owner)
    ON CONFLICT (id) DO NOTHING;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'exists'::text, 0::bigint, 0::bigint, 0::bigint;
        RETURN;
    END IF;
    INSERT INTO members (doc_id, user_id, role) VALUES (p_id, p_owner, 'owner');
    RETURN QUERY
    SELECT a.status, a.v, a.position, a.ts
      FROM atelier_append(ARRAY[p_id], ARRAY[0::bigint], ARRAY[p_actor], ARRAY[p_op_id],
                          ARRAY[p_kind], ARRAY[p_op], ARRAY[p_effect]) AS a;
END
$$;
