-- Bars keyed by (symbol, timeframe, ts = bar OPEN time), with their derived series.
CREATE TABLE bars (
    symbol text NOT NULL,
    timeframe text NOT NULL,
    ts timestamptz NOT NULL,
    open double precision NOT NULL,
    high double precision NOT NULL,
    low double precision NOT NULL,
    close double precision NOT NULL,
    volume double precision NOT NULL,
    trades bigint,
    vwap double precision,
    source text NOT NULL,
    ingested_at timestamptz NOT NULL DEFAULT now(),
    -- Derived series, each from this bar and earlier ones only; NULL during warm-up.
    atr14 double precision,
    ema21 double precision,
    rsi14 double precision,
    realised_vol20 double precision,
    indicator_version text,
    PRIMARY KEY (symbol, timeframe, ts)
);

-- A corrected bar (same key, other values): the values it replaced, and what replaced them.
CREATE TABLE bar_corrections (
    id bigserial PRIMARY KEY,
    symbol text NOT NULL,
    timeframe text NOT NULL,
    ts timestamptz NOT NULL,
    old_values jsonb NOT NULL,
    new_values jsonb NOT NULL,
    source text NOT NULL,
    corrected_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX bar_corrections_key ON bar_corrections (symbol, timeframe, ts);

-- Gaps against the symbol's calendar: reported, never filled.
CREATE TABLE gaps (
    symbol text NOT NULL,
    timeframe text NOT NULL,
    gap_start timestamptz NOT NULL,
    gap_end timestamptz NOT NULL,
    missing_bars integer NOT NULL,
    detected_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, timeframe, gap_start)
);

-- One liquidity cluster per symbol (H / M / L), recomputed when bars arrive.
CREATE TABLE clusters (
    symbol text PRIMARY KEY,
    cluster text NOT NULL CHECK (cluster IN ('H', 'M', 'L')),
    dollar_volume double precision NOT NULL,
    rule_version text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Buy/sell signals waiting for the bars of their horizon, per label spec.
CREATE TABLE pending_signals (
    signal_id text NOT NULL,
    label_spec text NOT NULL,
    symbol text NOT NULL,
    timeframe text NOT NULL,
    side text NOT NULL CHECK (side IN ('buy', 'sell')),
    ts timestamptz NOT NULL,
    entry_price double precision,
    received_at timestamptz NOT NULL DEFAULT now(),
    -- Set when the signal can never be labelled (its history will not grow): not retried.
    failed_at timestamptz,
    error text,
    PRIMARY KEY (signal_id, label_spec)
);
CREATE INDEX pending_signals_series ON pending_signals (symbol, timeframe, ts)
    WHERE failed_at IS NULL;

-- Labels, once per (signal, spec); the row and its outbox event commit together.
CREATE TABLE labels (
    signal_id text NOT NULL,
    label_spec text NOT NULL,
    symbol text NOT NULL,
    timeframe text NOT NULL,
    side text NOT NULL,
    signal_ts timestamptz NOT NULL,
    labels jsonb NOT NULL,
    liquidity_cluster text,
    labeled_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (signal_id, label_spec)
);

CREATE TABLE outbox (
    id bigserial PRIMARY KEY,
    subject text NOT NULL,
    body text NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    last_error text,
    sent_at timestamptz
);
CREATE INDEX outbox_pending ON outbox (id) WHERE sent_at IS NULL;
