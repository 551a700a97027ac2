-- Experiments (canary / A-B / shadow), the predictions and outcomes that decide them, and
-- the degradation monitor's memory. Audit rows of experiments reuse `audit` (experiment_id,
-- plus the experiment's state move in from_state / to_state); events reuse `outbox`.

CREATE TABLE experiments (
    experiment_id text PRIMARY KEY,
    model_name text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('canary', 'ab', 'shadow')),
    control_version text NOT NULL,
    candidate_version text NOT NULL,
    candidate_share double precision CHECK (candidate_share > 0 AND candidate_share < 1),
    min_samples_per_arm integer NOT NULL CHECK (min_samples_per_arm >= 2),
    alpha double precision NOT NULL CHECK (alpha > 0 AND alpha < 1),
    auto_promote boolean NOT NULL,
    state text NOT NULL CHECK (state IN ('active', 'completed', 'cancelled')),
    decision text CHECK (decision IN ('promote', 'keep', 'inconclusive')),
    winner text,
    p_value double precision,
    result jsonb,
    -- promote decisions only: pending (awaiting approval), applied, or stale (production
    -- moved on before approval)
    promotion text CHECK (promotion IN ('pending', 'applied', 'stale')),
    started_at timestamptz NOT NULL DEFAULT now(),
    started_by text NOT NULL,
    ended_at timestamptz,
    ended_by text,
    end_reason text
);
-- One active experiment per model, whatever the application does.
CREATE UNIQUE INDEX experiments_one_active ON experiments (model_name) WHERE state = 'active';
CREATE INDEX experiments_by_model ON experiments (model_name, started_at DESC);

ALTER TABLE audit ADD COLUMN from_state text;
ALTER TABLE audit ADD COLUMN to_state text;
CREATE INDEX audit_by_experiment ON audit (experiment_id) WHERE experiment_id IS NOT NULL;

CREATE TABLE predictions (
    prediction_id text PRIMARY KEY,
    signal_id text NOT NULL,
    model_version text,
    p_success double precision NOT NULL,
    fallback boolean NOT NULL,
    experiment_id text,
    arm text,
    occurred_at timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX predictions_by_experiment ON predictions (experiment_id, arm)
    WHERE experiment_id IS NOT NULL;
CREATE INDEX predictions_by_version ON predictions (model_version, signal_id)
    WHERE NOT fallback;
CREATE INDEX predictions_by_signal ON predictions (signal_id);

CREATE TABLE outcomes (
    signal_id text PRIMARY KEY,
    result text CHECK (result IN ('win', 'loss', 'breakeven')),
    -- 1 win, 0 loss or breakeven, NULL when the event had no result (ignored)
    win smallint CHECK (win IN (0, 1)),
    closed_at timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outcomes_recent ON outcomes (closed_at DESC) WHERE win IS NOT NULL;

-- A production version the degradation monitor rolled back (never twice).
CREATE TABLE degradation_rollbacks (
    model_name text NOT NULL,
    version text NOT NULL,
    at timestamptz NOT NULL DEFAULT now(),
    rolled_back_to text,
    details jsonb NOT NULL,
    PRIMARY KEY (model_name, version)
);
