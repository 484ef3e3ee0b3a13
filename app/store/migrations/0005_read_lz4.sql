-- 0005: the read side's state bytes compressed with lz4 instead of pglz.
--
-- read.doc_state.state and read.history.state hold a whole document's JSON, rewritten
-- by every read-worker batch (doc_state) and every HISTORY_EVERY events (history). For
-- a large document (1.4 MB of state) pglz made those two statements 46 ms and 127 ms of
-- a 187 ms batch; lz4 made them 14 ms and 36 ms (docs/readside.md "Workers",
-- scripts/bench_worker.py). JSON still compresses several times with lz4.
--
-- Every generation's table is altered (a rebuild may have switched to g2 or later),
-- and a rebuild's `CREATE TABLE ... (LIKE ... INCLUDING ALL)` copies the setting to
-- the next generation. Only new values are compressed the new way; old ones stay
-- readable as they are. A server built without lz4 keeps pglz (a notice says so).
DO $$
DECLARE
    t record;
BEGIN
    FOR t IN
        SELECT format('%I.%I', schemaname, tablename) AS name
        FROM pg_tables
        WHERE schemaname = 'read' AND tablename ~ '^(doc_state|history)_g[0-9]+$'
    LOOP
        BEGIN
            EXECUTE format('ALTER TABLE %s ALTER COLUMN state SET COMPRESSION lz4', t.name);
        EXCEPTION WHEN feature_not_supported THEN
            RAISE NOTICE 'lz4 is not available in this server: % keeps pglz', t.name;
        END;
    END LOOP;
END
$$;
