-- Signed checkpoints of the service's own log (runtime.witness, DESIGN §10): the RFC 9162
-- Merkle tree's frontier over every event hash, advanced from the last checkpoint by reading
-- only the rows after it, and every checkpoint the service made and signed. Neither is a read
-- model: a rebuild leaves them alone.

-- One row: the right edge of the tree over positions 1..size (one hash per set bit of size,
-- leftmost first) and the hash of the event at `size`, which the next advance links onto.
CREATE TABLE {schema}.log_frontier (
    singleton   boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    size        bigint      NOT NULL CHECK (size >= 0),
    head_hash   text        NOT NULL,
    nodes       text[]      NOT NULL,
    updated_at  timestamptz NOT NULL
);
INSERT INTO {schema}.log_frontier (size, head_hash, nodes, updated_at)
    VALUES (0, repeat('0', 64), '{}', now());

-- What the service signed: tree size (= head position), head hash, Merkle root, when, with
-- which key. One per size and key: a checkpoint asked for while the log stands still is the
-- last one again.
CREATE TABLE {schema}.log_checkpoints (
    tree_size   bigint      NOT NULL CHECK (tree_size >= 0),
    key_id      text        NOT NULL,
    head_hash   text        NOT NULL,
    root_hash   text        NOT NULL,
    at          timestamptz NOT NULL,
    signature   text        NOT NULL,
    PRIMARY KEY (tree_size, key_id)
);
CREATE INDEX log_checkpoints_at ON {schema}.log_checkpoints (at);
