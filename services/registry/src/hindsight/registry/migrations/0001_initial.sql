-- Registry schema: training runs, model versions with stages, audit log, outbox.
-- Experiments (issue 4) add their own table in a later migration and reuse audit
-- (experiment_id) and outbox (any subject).

CREATE TABLE training_runs (
    training_run_id text PRIMARY KEY,
    model_name text NOT NULL,
    status text NOT NULL CHECK (status IN ('completed', 'failed', 'skipped')),
    version text,
    error text,
    dataset_size bigint,
    duration_s double precision,
    data_start timestamptz,
    data_end timestamptz,
    occurred_at timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX training_runs_recent ON training_runs (occurred_at DESC);

CREATE TABLE versions (
    model_name text NOT NULL,
    version text NOT NULL,
    stage text NOT NULL
        CHECK (stage IN ('candidate', 'staging', 'production', 'archived', 'refused')),
    training_run_id text NOT NULL,
    created_at timestamptz NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT now(),
    stage_changed_at timestamptz NOT NULL DEFAULT now(),
    artifact_uri text NOT NULL,
    sha256 text NOT NULL,
    card jsonb,
    headline jsonb NOT NULL DEFAULT '{}'::jsonb,
    gates jsonb NOT NULL DEFAULT '[]'::jsonb,
    gates_passed boolean NOT NULL DEFAULT false,
    refused_reason text,
    PRIMARY KEY (model_name, version)
);
-- Exactly one production version per model, whatever the application does.
CREATE UNIQUE INDEX versions_one_production ON versions (model_name)
    WHERE stage = 'production';

CREATE TABLE audit (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    actor text NOT NULL,
    action text NOT NULL,
    model_name text NOT NULL,
    version text NOT NULL,
    from_stage text,
    to_stage text NOT NULL,
    reason text NOT NULL,
    experiment_id text
);
CREATE INDEX audit_by_model ON audit (model_name, id);

CREATE TABLE outbox (
    id bigserial PRIMARY KEY,
    subject text NOT NULL,
    payload jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    sent_at timestamptz,
    attempts integer NOT NULL DEFAULT 0,
    last_error text
);
CREATE INDEX outbox_pending ON outbox (id) WHERE sent_at IS NULL;
