-- 0001: the event store's tables (docs/eventstore.md explains each one).
--
-- The write path touches documents (the per-document lock and version guard),
-- op_ledger (I3), log_head (the global position counter) and events, in that order,
-- inside atelier_append (0002). Everything else is off the hot path.

-- One row describing this store. store_id tells two stores apart (a backup restored
-- elsewhere is another store); epoch is bumped by the restore runbook after any
-- restore, PITR or rewind, and every cursor handed out carries it, so a consumer that
-- sees a new epoch drops its cursor and resyncs (DESIGN.md, "Global order").
CREATE TABLE store_meta (
    id          smallint    PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    store_id    uuid        NOT NULL DEFAULT gen_random_uuid(),
    epoch       integer     NOT NULL DEFAULT 1 CHECK (epoch >= 1),
    created_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO store_meta DEFAULT VALUES;

-- The only source of global positions. Every append transaction bumps this one row as
-- its last statement and holds the row lock until it commits, so positions are handed
-- out in commit order and are dense: a transaction that rolls back also rolls back its
-- bump, and the next one reuses the numbers. A reader can therefore treat any hole as
-- an invariant breach instead of "maybe a late commit" (DESIGN.md, "Global order").
-- A low fillfactor leaves room in the page for HOT updates: the row is rewritten by
-- every append and must never need an index update or a new page.
CREATE TABLE log_head (
    id             smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    last_position  bigint   NOT NULL DEFAULT 0 CHECK (last_position >= 0)
) WITH (fillfactor = 10);
INSERT INTO log_head DEFAULT VALUES;

-- One row per document: the optimistic-concurrency guard and the per-document lock.
-- v is the version of the document's last event (0 only inside the transaction that
-- creates it); I2 says v == count(events of the document) at every commit.
-- Documents are never deleted (every version is kept forever), which is why events and
-- op_ledger need no foreign key to this table on the hot path (atelier_append locks the
-- row before it writes either). fillfactor leaves room for HOT updates of v.
CREATE TABLE documents (
    id             text        PRIMARY KEY,
    title          text        NOT NULL,
    owner          text        NOT NULL,
    v              bigint      NOT NULL DEFAULT 0 CHECK (v >= 0),
    last_position  bigint      NOT NULL DEFAULT 0 CHECK (last_position >= 0),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
) WITH (fillfactor = 80);

-- Who may read and write a document (I8). The owner is a member with role 'owner'.
CREATE TABLE members (
    doc_id   text NOT NULL REFERENCES documents (id),
    user_id  text NOT NULL,
    role     text NOT NULL CHECK (role IN ('owner', 'editor', 'viewer')),
    PRIMARY KEY (doc_id, user_id)
);
CREATE INDEX members_user_idx ON members (user_id);

-- The truth: append-only, one stream per document.
--   position  dense 1..n from log_head, in commit order (the global log).
--   (doc_id, v) unique: versions 1..n per document with no duplicate (I2); with the
--             version check under the document's row lock there is no gap either.
--   op        the op exactly as clients receive it, orjson bytes. bytea, not jsonb:
--             jsonb would re-order keys, re-print numbers and cost a parse on write
--             and a re-encode on every read, while the fan-out wants to splice the
--             stored bytes into the message untouched; SQL over payloads is rare and
--             can still use convert_from(op, 'UTF8')::jsonb. bytea is also smaller on
--             disk (LIMITS.md: 300 B of JSON took 680 B as jsonb).
--   effect    the domain's undo/redo data, opaque bytes, never sent to clients.
--   op_id     the client's op id (null for events no client op made: doc.create,
--             restore); its uniqueness lives in op_ledger.
--   ts        set once per append transaction, after the log_head lock is taken, so ts
--             never decreases along positions.
CREATE TABLE events (
    position  bigint      PRIMARY KEY CHECK (position >= 1),
    doc_id    text        NOT NULL,
    v         bigint      NOT NULL CHECK (v >= 1),
    kind      text        NOT NULL,
    op        bytea       NOT NULL,
    effect    bytea       NOT NULL,
    actor     text        NOT NULL,
    op_id     text,
    ts        timestamptz NOT NULL,
    CONSTRAINT events_doc_v_key UNIQUE (doc_id, v)
);

-- Append-only (DESIGN.md I2, I5, I6): history is never rewritten. Events are
-- corrected by new events (undo, restore); personal data is handled by
-- crypto-shredding, not by DELETE. Production should also REVOKE UPDATE, DELETE,
-- TRUNCATE from the application role; the trigger holds even for a superuser unless
-- it deliberately sets session_replication_role = replica (the test cleanup does).
CREATE FUNCTION atelier_events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'history is corrected by appending events, never by rewriting them';
END
$$;

CREATE TRIGGER events_no_update_delete
    BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION atelier_events_append_only();

CREATE TRIGGER events_no_truncate
    BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION atelier_events_append_only();

-- Idempotency ledger (I3): a client op id is applied at most once per user and
-- document, EVER: rows are never deleted, so the dedup horizon is unbounded (a
-- client may re-send an op id after any outage). v is the version it was stored at;
-- the event's position and ts are found through events (doc_id, v).
-- A separate table rather than a unique index on events so the guarantee survives a
-- future partitioning or archiving of events by position.
CREATE TABLE op_ledger (
    doc_id   text   NOT NULL,
    user_id  text   NOT NULL,
    op_id    text   NOT NULL,
    v        bigint NOT NULL CHECK (v >= 1),
    PRIMARY KEY (doc_id, user_id, op_id)
);

-- Snapshots of document state, written off the append path. schema is the state
-- format version: a reader asks for its own and ignores the rest, so bumping the
-- format or deleting every snapshot is always safe (state = replay of events, I6).
-- The store keeps the latest two per document.
CREATE TABLE snapshots (
    doc_id      text        NOT NULL REFERENCES documents (id),
    v           bigint      NOT NULL CHECK (v >= 1),
    schema      integer     NOT NULL,
    state       bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (doc_id, v)
);

-- Named versions ("tags") of a document. Names may repeat: naming is a user action,
-- the pair (name, v) is what is shown.
CREATE TABLE named_versions (
    id      bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    doc_id  text        NOT NULL REFERENCES documents (id),
    name    text        NOT NULL,
    v       bigint      NOT NULL CHECK (v >= 1),
    actor   text        NOT NULL,
    ts      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX named_versions_doc_idx ON named_versions (doc_id, v);

-- Uploaded assets, content-addressed: the key is the SHA-256 of the bytes, so the same
-- bytes are stored once and an id always means the same bytes (every version kept).
CREATE TABLE assets (
    sha256        text        PRIMARY KEY CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    content_type  text        NOT NULL,
    size          bigint      NOT NULL CHECK (size >= 0),
    data          bytea       NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (size = octet_length(data))
);

-- Epoch milliseconds, the only timestamp format that leaves the store (PROTOCOL.md:
-- integer milliseconds since the Unix epoch). Floor, so the value never rounds into
-- the future.
CREATE FUNCTION atelier_ms(t timestamptz) RETURNS bigint
LANGUAGE sql STABLE PARALLEL SAFE
RETURN floor(extract(epoch FROM t) * 1000)::bigint;
