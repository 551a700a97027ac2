-- The Back-Labeler's signal.labeled (issue 16): one row per (signal_id, label_spec), the
-- newest revision kept, and when each label spec was first seen (the family runs train on
-- the newest spec unless one is configured). Independent of 0002 (another table), so the
-- two apply in either order on a database that saw one of them first.
CREATE TABLE signal_labels (
    signal_id text NOT NULL,
    label_spec text NOT NULL,
    revision integer NOT NULL DEFAULT 0,
    horizon_bars integer NOT NULL CHECK (horizon_bars > 0),
    runup_r double precision NOT NULL,
    drawdown_r double precision NOT NULL,
    realised_r double precision NOT NULL,
    y_entry smallint NOT NULL CHECK (y_entry IN (0, 1)),
    t_hit_tp double precision,
    t_hit_sl double precision,
    mfe_atr double precision,
    mae_atr double precision,
    mfe_r double precision,
    mae_r double precision,
    dd_katr double precision,
    best_offset_katr double precision,
    liquidity_cluster text CHECK (liquidity_cluster IN ('H', 'M', 'L')),
    symbol text,
    timeframe text,
    source text NOT NULL,
    occurred_at timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (signal_id, label_spec)
);
CREATE INDEX signal_labels_spec ON signal_labels (label_spec, signal_id);

CREATE TABLE label_specs (
    label_spec text PRIMARY KEY,
    first_seen_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
