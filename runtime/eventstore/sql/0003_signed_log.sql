-- Signed heads, appends only through the store's rules, and what a consumer believes of each
-- producer (DESIGN §9).

-- The last event of every commit carries the service's signature over its position and hash;
-- the events before it are covered through the hash chain.
ALTER TABLE {schema}.events ADD COLUMN signature text;
ALTER TABLE {schema}.events ADD COLUMN key_id text;
CREATE INDEX events_signed ON {schema}.events (position) WHERE signature IS NOT NULL;

-- The service's own role may neither write the chain head nor insert events directly: it
-- locks the head and appends through these two functions, owned by the role that migrates,
-- which take the position and the previous hash from the database itself and refuse a row
-- that does not extend the chain or that would date itself before the head.
CREATE FUNCTION {schema}.lock_chain_head(
    OUT head_position bigint, OUT head_hash text, OUT head_recorded_at timestamptz
)
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS $$
    SELECT h.position, h.hash, h.recorded_at FROM {schema}.chain_head h FOR UPDATE;
$$;

CREATE FUNCTION {schema}.append_log(
    p_position bigint[], p_event_id uuid[], p_stream_id text[], p_stream_version integer[],
    p_type text[], p_schema_version integer[], p_branch_id text[], p_occurred_at timestamptz[],
    p_recorded_at timestamptz[], p_actor_id text[], p_actor_role text[], p_correlation_id uuid[],
    p_causation_id uuid[], p_data jsonb[], p_hash text[], p_prev_hash text[],
    p_signature text[], p_key_id text[]
) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
    head record;
    n integer := coalesce(cardinality(p_position), 0);
    bad record;
BEGIN
    SELECT h.position, h.hash, h.recorded_at INTO head FROM {schema}.chain_head h FOR UPDATE;
    IF n = 0 THEN
        RETURN head.position;
    END IF;
    SELECT u.i, u.pos, u.h, u.ph, u.rec, lag(u.h, 1, head.hash) OVER (ORDER BY u.i) AS expected
      INTO bad
      FROM unnest(p_position, p_hash, p_prev_hash, p_recorded_at) WITH ORDINALITY
           AS u(pos, h, ph, rec, i)
     WHERE u.pos IS DISTINCT FROM head.position + u.i
        OR u.h !~ '^[0-9a-f]{64}$'
        OR u.rec < coalesce(head.recorded_at, '-infinity'::timestamptz)
        OR u.rec > now() + interval '5 minutes'
     ORDER BY u.i LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'event at position % does not extend the log at position % (or is dated before its head)',
            bad.pos, head.position USING ERRCODE = 'check_violation';
    END IF;
    SELECT x.i INTO bad FROM (
        SELECT u.i, u.ph, lag(u.h, 1, head.hash) OVER (ORDER BY u.i) AS expected
          FROM unnest(p_hash, p_prev_hash) WITH ORDINALITY AS u(h, ph, i)
    ) x WHERE x.ph IS DISTINCT FROM x.expected ORDER BY x.i LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'event % of the append does not link to the hash before it', bad.i
            USING ERRCODE = 'check_violation';
    END IF;
    INSERT INTO {schema}.events (position, event_id, stream_id, stream_version, type,
        schema_version, branch_id, occurred_at, recorded_at, actor_id, actor_role,
        correlation_id, causation_id, data, hash, prev_hash, signature, key_id)
    SELECT * FROM unnest(p_position, p_event_id, p_stream_id, p_stream_version, p_type,
        p_schema_version, p_branch_id, p_occurred_at, p_recorded_at, p_actor_id, p_actor_role,
        p_correlation_id, p_causation_id, p_data, p_hash, p_prev_hash, p_signature, p_key_id);
    UPDATE {schema}.chain_head
       SET position = p_position[n], hash = p_hash[n], recorded_at = p_recorded_at[n];
    RETURN p_position[n];
END;
$$;

-- Functions are executable by everyone unless said otherwise: these only by the roles that
-- `party provision` grants them to.
REVOKE ALL ON FUNCTION {schema}.lock_chain_head() FROM PUBLIC;
REVOKE ALL ON FUNCTION {schema}.append_log(bigint[], uuid[], text[], integer[], text[],
    integer[], text[], timestamptz[], timestamptz[], text[], text[], uuid[], uuid[], jsonb[],
    text[], text[], text[], text[]) FROM PUBLIC;

-- What a consumer applied of each producer: the inbox keeps each event's place in its
-- producer's chain, and the cursor is the last position up to which nothing is missing.
ALTER TABLE {schema}.inbox ADD COLUMN hash text;
ALTER TABLE {schema}.inbox ADD COLUMN prev_hash text;
CREATE INDEX inbox_source_position ON {schema}.inbox (source, position);

CREATE TABLE {schema}.producer_cursors (
    source      text        PRIMARY KEY,
    position    bigint      NOT NULL,
    hash        text        NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
