-- Data specs registered over HTTP (PUT /v1/data-specs/{model_name}), one row per model and
-- version, never changed: a version names one content for good (content_hash over every
-- field but the version). A model's newest version wins over its settings' spec.
CREATE TABLE data_specs (
    model_name text NOT NULL,
    version integer NOT NULL CHECK (version >= 1),
    spec jsonb NOT NULL,
    content_hash text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    created_by text NOT NULL,
    PRIMARY KEY (model_name, version)
);
