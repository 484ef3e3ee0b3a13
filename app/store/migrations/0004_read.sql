-- 0004: the read side (CQRS): materialized views kept by read workers (docs/readside.md).
--
-- Everything here is derived from the events table and can be rebuilt from it
-- (DESIGN.md I5): `python -m app rebuild VIEW`. Nothing on the write path reads or
-- writes this schema.
--
-- Each view is a PostgreSQL view `read.<name>` over one generation of its table,
-- `read.<name>_g<N>`. Workers write and queries read through `read.<name>`; a rebuild
-- fills `read.<name>_g<N+1>` while the old one keeps serving, catches it up to the
-- live checkpoints, and switches with one CREATE OR REPLACE VIEW in the transaction
-- that holds the view's lock. `read.generations` records which N serves.
CREATE SCHEMA read;

-- Fixed at creation: the number of shards the documents are spread over (a document's
-- shard is crc32(utf-8 id) mod shards, app/views/shards.py). Workers own shards, one
-- worker per shard at a time. Changing it means rebuilding every view.
CREATE TABLE read.meta (
    id      smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    shards  integer  NOT NULL DEFAULT 16 CHECK (shards BETWEEN 1 AND 4096)
);
INSERT INTO read.meta DEFAULT VALUES;

CREATE TABLE read.generations (
    view        text    PRIMARY KEY,
    generation  integer NOT NULL CHECK (generation >= 1)
);

-- One row per view and shard: the global position up to which the view holds every
-- event of the shard. Written in the same transaction as the view's rows, as a
-- compare-and-set on (position, fencing), so a crash never applies an event twice or
-- skips one, and a worker that lost its lease cannot write (I5). fencing is bumped by
-- every takeover of the shard's lease. status 'paused' means an event of the shard
-- could not be applied: it is in read.dead_letters and the shard waits for an operator.
CREATE TABLE read.checkpoints (
    view          text        NOT NULL,
    shard         integer     NOT NULL CHECK (shard >= 0),
    position      bigint      NOT NULL DEFAULT 0 CHECK (position >= 0),
    epoch         integer     NOT NULL DEFAULT 1,
    fencing       bigint      NOT NULL DEFAULT 0,
    owner         text,
    status        text        NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'paused')),
    heartbeat_at  timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (view, shard)
);

-- Events that a projection could not apply. The shard stops at the event (its
-- checkpoint stays before it) until an operator fixes the cause and resumes it.
CREATE TABLE read.dead_letters (
    id               bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    view             text        NOT NULL,
    shard            integer     NOT NULL,
    position         bigint      NOT NULL,
    doc_id           text        NOT NULL,
    v                bigint      NOT NULL,
    error            text        NOT NULL,
    attempts         integer     NOT NULL DEFAULT 1,
    first_failed_at  timestamptz NOT NULL DEFAULT now(),
    last_failed_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (view, position)
);

-- doc_state: the current state of each document, as the exact JSON bytes of
-- PROTOCOL.md section 2 ({"id", "title", "v", "layers"}), so a GET splices them into
-- its answer without parsing. updated_at is the last event's ts (epoch ms).
CREATE TABLE read.doc_state_g1 (
    doc_id      text   PRIMARY KEY,
    v           bigint NOT NULL CHECK (v >= 1),
    state       bytea  NOT NULL,
    updated_at  bigint NOT NULL
);

-- catalog: one row per document for `GET /api/documents` (joined with members, the
-- write side's record of who may read what, which is not event-sourced).
CREATE TABLE read.catalog_g1 (
    doc_id      text    PRIMARY KEY,
    title       text    NOT NULL,
    owner       text    NOT NULL,
    v           bigint  NOT NULL CHECK (v >= 1),
    layers      integer NOT NULL CHECK (layers >= 0),
    elements    integer NOT NULL CHECK (elements >= 0),
    updated_at  bigint  NOT NULL
);

-- activity: who did what, one row per event, newest first per document.
CREATE TABLE read.activity_g1 (
    doc_id  text   NOT NULL,
    v       bigint NOT NULL CHECK (v >= 1),
    actor   text   NOT NULL,
    kind    text   NOT NULL,
    ts      bigint NOT NULL,
    PRIMARY KEY (doc_id, v)
);

-- history: the state at every version that is a multiple of HISTORY_EVERY
-- (app/views/schema.py), in the same bytes as doc_state, so `?at=v` replays at most
-- HISTORY_EVERY - 1 events from the nearest one below v.
CREATE TABLE read.history_g1 (
    doc_id  text   NOT NULL,
    v       bigint NOT NULL CHECK (v >= 1),
    state   bytea  NOT NULL,
    PRIMARY KEY (doc_id, v)
);

CREATE VIEW read.doc_state AS SELECT doc_id, v, state, updated_at FROM read.doc_state_g1;
CREATE VIEW read.catalog AS
    SELECT doc_id, title, owner, v, layers, elements, updated_at FROM read.catalog_g1;
CREATE VIEW read.activity AS SELECT doc_id, v, actor, kind, ts FROM read.activity_g1;
CREATE VIEW read.history AS SELECT doc_id, v, state FROM read.history_g1;

INSERT INTO read.generations (view, generation)
VALUES ('doc_state', 1), ('catalog', 1), ('activity', 1), ('history', 1);

INSERT INTO read.checkpoints (view, shard)
SELECT view, shard
FROM read.generations, generate_series(0, (SELECT shards FROM read.meta) - 1) AS shard;
