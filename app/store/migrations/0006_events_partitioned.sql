-- 0006: events becomes a table partitioned by HASH (doc_id), 16 partitions
-- (events_p00 .. events_p15), so that a document's events live together: the key
-- Citus would distribute on (docs/eventstore.md, "Partitioning" and "Distributing
-- with Citus").
--
-- What changes and what is kept:
--   (doc_id, v)  UNIQUE becomes the PRIMARY KEY (I2): it contains the partition key,
--                so PostgreSQL enforces it, partition by partition, which for a hash
--                partitioning on doc_id is the same as enforcing it globally.
--   position     stays NOT NULL, CHECK (position >= 1), with a plain index per
--                partition (events_position_idx) for the log's ordered reads. A
--                unique index on position alone is impossible on a table partitioned
--                by doc_id (a unique index must contain the partition key), so the
--                uniqueness of positions is no longer a constraint: it holds by
--                construction (every position is handed out once by the log_head row,
--                0001/0003), `python -m app verify` checks it (no duplicate, no hole),
--                and tests/contract/test_partitioning.py fails if it breaks.
--   CHECKs, NOT NULLs, column types and order: as in 0001.
--   append-only  the row trigger (UPDATE/DELETE) is declared on the parent and so
--                cloned to every partition; the TRUNCATE trigger is a statement
--                trigger, which is not cloned, so it is created on the parent and on
--                every partition.
--   privileges   the old table's grants (and the owner, and any privilege the owner
--                gave up) are copied to the new table and to every partition, so a
--                role that may not UPDATE events may not UPDATE a partition either.
--   dependents   the schema has no view, rule, foreign key or publication naming
--                events; if an operator added one, this migration stops (nothing
--                changed) and names it: drop it, migrate, recreate it.
--   sequences    none: positions come from log_head; the functions of 0002/0003 name
--                `events` and resolve it when they run, so they write the new table.
--
-- It runs in one transaction holding ACCESS EXCLUSIVE on events from the start:
-- appends wait (and fail Unavailable after their lock_timeout, to be retried) while
-- the rows are copied, so on a large store run it in a maintenance window. Copy
-- rate, measured on the 2-core development machine: see docs/eventstore.md.

LOCK TABLE events IN ACCESS EXCLUSIVE MODE;

DO $$
DECLARE
    found text;
BEGIN
    SELECT string_agg(what, ', ' ORDER BY what) INTO found FROM (
        SELECT DISTINCT format('view or rule %s', r.ev_class::regclass) AS what
          FROM pg_depend AS d
          JOIN pg_rewrite AS r ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
         WHERE d.refclassid = 'pg_class'::regclass
           AND d.refobjid = 'events'::regclass
           AND r.ev_class <> 'events'::regclass
        UNION ALL
        SELECT format('foreign key %I on %s', c.conname, c.conrelid::regclass)
          FROM pg_constraint AS c
         WHERE c.contype = 'f'
           AND (c.confrelid = 'events'::regclass OR c.conrelid = 'events'::regclass)
        UNION ALL
        SELECT format('publication %I', p.pubname)
          FROM pg_publication_rel AS pr
          JOIN pg_publication AS p ON p.oid = pr.prpubid
         WHERE pr.prrelid = 'events'::regclass
    ) AS deps;
    IF found IS NOT NULL THEN
        RAISE EXCEPTION '0006: events is named by %: drop it, migrate, then recreate it', found
            USING ERRCODE = 'dependent_objects_still_exist';
    END IF;
END
$$;

CREATE TABLE events_partitioned (
    position  bigint      NOT NULL CONSTRAINT events_position_check CHECK (position >= 1),
    doc_id    text        NOT NULL,
    v         bigint      NOT NULL CONSTRAINT events_v_check CHECK (v >= 1),
    kind      text        NOT NULL,
    op        bytea       NOT NULL,
    effect    bytea       NOT NULL,
    actor     text        NOT NULL,
    op_id     text,
    ts        timestamptz NOT NULL
) PARTITION BY HASH (doc_id);

DO $$
BEGIN
    FOR i IN 0..15 LOOP
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF events_partitioned'
            ' FOR VALUES WITH (MODULUS 16, REMAINDER %s)',
            format('events_p%s', lpad(i::text, 2, '0')), i);
    END LOOP;
END
$$;

-- The rows, in position order (each partition's heap then follows its position index,
-- as appends will keep it). The indexes are built after the copy: one sort each
-- instead of one insertion per row.
INSERT INTO events_partitioned (position, doc_id, v, kind, op, effect, actor, op_id, ts)
SELECT position, doc_id, v, kind, op, effect, actor, op_id, ts
  FROM events
 ORDER BY position;

ALTER TABLE events_partitioned
    ADD CONSTRAINT events_partitioned_pkey PRIMARY KEY (doc_id, v);
CREATE INDEX events_partitioned_position_idx ON events_partitioned (position);

CREATE TRIGGER events_no_update_delete
    BEFORE UPDATE OR DELETE ON events_partitioned
    FOR EACH ROW EXECUTE FUNCTION atelier_events_append_only();

CREATE TRIGGER events_no_truncate
    BEFORE TRUNCATE ON events_partitioned
    FOR EACH STATEMENT EXECUTE FUNCTION atelier_events_append_only();

-- Statement triggers and privileges are per table: every partition gets its own.
DO $$
DECLARE
    old_owner  oid;
    old_acl    aclitem[];
    part       regclass;
    grant_     record;
    kept       text[];
    priv       text;
BEGIN
    SELECT c.relowner, c.relacl INTO old_owner, old_acl
      FROM pg_class AS c WHERE c.oid = 'events'::regclass;
    FOR part IN
        SELECT 'events_partitioned'::regclass
        UNION ALL
        SELECT i.inhrelid::regclass FROM pg_inherits AS i
         WHERE i.inhparent = 'events_partitioned'::regclass
    LOOP
        IF part <> 'events_partitioned'::regclass THEN
            EXECUTE format(
                'CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON %s'
                ' FOR EACH STATEMENT EXECUTE FUNCTION atelier_events_append_only()', part);
        END IF;
        IF old_owner <> (SELECT c.relowner FROM pg_class AS c WHERE c.oid = part) THEN
            EXECUTE format('ALTER TABLE %s OWNER TO %I', part, pg_get_userbyid(old_owner));
        END IF;
        IF old_acl IS NULL THEN
            CONTINUE;  -- default privileges: nothing was granted or revoked
        END IF;
        kept := ARRAY[]::text[];
        FOR grant_ IN
            SELECT a.grantee, a.privilege_type, a.is_grantable FROM aclexplode(old_acl) AS a
        LOOP
            IF grant_.grantee = old_owner THEN
                kept := kept || grant_.privilege_type;
            ELSE
                EXECUTE format(
                    'GRANT %s ON %s TO %s%s', grant_.privilege_type, part,
                    CASE WHEN grant_.grantee = 0 THEN 'PUBLIC'
                         ELSE quote_ident(pg_get_userbyid(grant_.grantee)) END,
                    CASE WHEN grant_.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
            END IF;
        END LOOP;
        FOREACH priv IN ARRAY ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE',
                                    'REFERENCES', 'TRIGGER'] LOOP
            IF NOT priv = ANY (kept) THEN
                EXECUTE format('REVOKE %s ON %s FROM %I', priv, part,
                               pg_get_userbyid(old_owner));
            END IF;
        END LOOP;
    END LOOP;
END
$$;

DROP TABLE events;
ALTER TABLE events_partitioned RENAME TO events;
ALTER INDEX events_partitioned_pkey RENAME TO events_pkey;
ALTER INDEX events_partitioned_position_idx RENAME TO events_position_idx;

-- Fresh statistics for the planner (autovacuum analyzes the partitions as they
-- grow, never the partitioned parent).
ANALYZE events;
