-- 0008: atelier_append_one, the append of a batch of ONE request (atelier_append of
-- 0007 stays, for batches of two or more). Same protocol, same answers, for the case
-- that is most common at low and moderate load: the group commit sends what waited
-- while the previous commit ran, and that is usually one op (86% of the group
-- commits in the many-docs scenario carried one).
--
-- Why a function of its own: atelier_append's cost per call is mostly the set-up of its
-- statements' plans over arrays (unnest, a window function for duplicates inside the
-- batch, a row_number for positions, a GROUP BY per document), not their work
-- (docs/benchmarks.md, "Where atelier_append's CPU goes"). With one request every
-- statement is a point probe or a single-row write on scalar parameters. Measured on
-- one connection, one op per call: 0.41 -> 0.22 ms of backend CPU and 0.54 -> 0.32 ms
-- of wall time per call (docs/benchmarks.md, "One op, one function").
--
-- The protocol, step for step as in 0007 (DESIGN.md "Global order", I2, I3):
--   (a) lock the document row FOR NO KEY UPDATE; its version is read from the locked
--       row (the latest committed, after waiting), never from an earlier snapshot;
--   (b) the op ledger is probed by primary key in a statement that starts after the
--       lock, so an earlier append of the same op id is visible (I3): the first
--       outcome is answered, nothing is stored;
--   (c) optimistic concurrency (I2): a request decided on another version conflicts;
--   (d) the ledger row, then (e) as the last statement the position from log_head,
--       the event and the document's new version: the log_head row lock is held to
--       COMMIT, so positions are dense and follow commit order.
-- events is named only to insert and, in the rare duplicate answer, to look up the
-- stored event: a generic plan that names the partitioned table locks every
-- partition it might probe (0007's header).

CREATE FUNCTION atelier_append_one(
    p_doc_id   text,
    p_expected bigint,
    p_actor    text,
    p_op_id    text,
    p_kind     text,
    p_op       bytea,
    p_effect   bytea
) RETURNS TABLE (status text, v bigint, "position" bigint, ts bigint)
LANGUAGE plpgsql VOLATILE
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
AS $$
#variable_conflict use_column
DECLARE
    cur_v     bigint;
    ledger_v  bigint;
    new_pos   bigint;
    commit_ts timestamptz;
BEGIN
    -- (a)
    SELECT doc.v INTO cur_v FROM documents AS doc WHERE doc.id = p_doc_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'missing'::text, 0::bigint, 0::bigint, 0::bigint;
        RETURN;
    END IF;

    -- (b)
    IF p_op_id IS NOT NULL THEN
        SELECT l.v INTO ledger_v FROM op_ledger AS l
         WHERE l.doc_id = p_doc_id AND l.user_id = p_actor AND l.op_id = p_op_id;
        IF FOUND THEN
            RETURN QUERY
            SELECT 'duplicate'::text, ledger_v, ev.position, atelier_ms(ev.ts)
              FROM (SELECT) AS one
              LEFT JOIN events AS ev ON ev.doc_id = p_doc_id AND ev.v = ledger_v;
            RETURN;
        END IF;
    END IF;

    -- (c)
    IF p_expected IS DISTINCT FROM cur_v THEN
        RETURN QUERY SELECT 'conflict'::text, cur_v, 0::bigint, 0::bigint;
        RETURN;
    END IF;

    -- (d)
    IF p_op_id IS NOT NULL THEN
        INSERT INTO op_ledger (doc_id, user_id, op_id, v)
        VALUES (p_doc_id, p_actor, p_op_id, cur_v + 1);
    END IF;

    -- (e) THE LAST STATEMENT: see 0007's (e). ts is read once, after the head's lock.
    WITH head AS (
        UPDATE log_head AS h
           SET last_position = h.last_position + 1
         WHERE h.id = 1
        RETURNING h.last_position AS p, clock_timestamp() AS at
    ), new_event AS (
        INSERT INTO events (position, doc_id, v, kind, op, effect, actor, op_id, ts)
        SELECT head.p, p_doc_id, cur_v + 1, p_kind, p_op, p_effect, p_actor, p_op_id, head.at
          FROM head
    ), moved AS (
        UPDATE documents AS doc
           SET v = cur_v + 1,
               last_position = head.p,
               updated_at = head.at,
               created_at = CASE WHEN doc.v = 0 THEN head.at ELSE doc.created_at END
          FROM head
         WHERE doc.id = p_doc_id
    )
    SELECT head.p, head.at INTO new_pos, commit_ts FROM head;

    -- Wakes the log followers; delivered at commit, in commit order.
    PERFORM pg_notify('atelier_log', new_pos::text);

    RETURN QUERY SELECT 'ok'::text, cur_v + 1, new_pos, atelier_ms(commit_ts);
END
$$;
