-- The trainer's data set and its runs (schema "trainer").
CREATE TABLE signals (
    signal_id text PRIMARY KEY,
    seq bigserial NOT NULL,
    symbol text NOT NULL,
    timeframe text NOT NULL,
    side text NOT NULL,
    ts timestamptz NOT NULL,
    features jsonb NOT NULL,
    feature_schema_version integer NOT NULL,
    entry_price double precision,
    trade_id text,
    run_id text,
    setup_id text,
    rule_version text,
    source text NOT NULL,
    occurred_at timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX signals_ts ON signals (ts);
CREATE INDEX signals_trade_id ON signals (trade_id) WHERE trade_id IS NOT NULL;

CREATE TABLE outcomes (
    signal_id text PRIMARY KEY,
    closed_at timestamptz NOT NULL,
    result text CHECK (result IN ('win', 'loss', 'breakeven')),
    result_derived boolean NOT NULL DEFAULT false,
    entry_price double precision,
    exit_price double precision,
    pnl double precision,
    realised_r double precision,
    mfe double precision,
    mae double precision,
    source text NOT NULL,
    occurred_at timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outcomes_received_at ON outcomes (received_at);

CREATE TABLE labels (
    trade_id text NOT NULL,
    labeler_id text NOT NULL,
    label text NOT NULL,
    quality_grade text,
    llm_agreed boolean,
    occurred_at timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (trade_id, labeler_id)
);

CREATE TABLE runs (
    run_id text PRIMARY KEY,
    model_name text NOT NULL,
    mode text NOT NULL CHECK (mode IN ('full', 'incremental')),
    trigger text NOT NULL,
    status text NOT NULL CHECK (status IN ('running', 'completed', 'failed', 'skipped')),
    reason text,
    requested_by text,
    error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    duration_s double precision,
    version text,
    artifact_uri text,
    sha256 text,
    dataset_size integer,
    metrics jsonb,
    report jsonb
);
CREATE INDEX runs_model_created ON runs (model_name, created_at DESC);
