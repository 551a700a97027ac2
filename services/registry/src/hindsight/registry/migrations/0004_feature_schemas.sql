-- Feature schemas (issue 15): a feature_schema_version names one ordered list of declared
-- features, registered once and never changed. Global, not per model: several models may read
-- one schema. Their registration is audited in `audit`, whose model columns a schema row
-- leaves empty (it names feature_schema_version instead).

CREATE TABLE feature_schemas (
    version integer PRIMARY KEY CHECK (version >= 1),
    -- sha256 (hex) of the canonical JSON of `features` (hindsight.common.feature_schema)
    content_hash text NOT NULL CHECK (content_hash ~ '^[0-9a-f]{64}$'),
    -- ordered [{name, dtype, min, max, missing}]
    features jsonb NOT NULL CHECK (jsonb_typeof(features) = 'array'),
    created_at timestamptz NOT NULL DEFAULT now(),
    created_by text NOT NULL
);

ALTER TABLE audit ADD COLUMN feature_schema_version integer;
ALTER TABLE audit ALTER COLUMN model_name DROP NOT NULL;
ALTER TABLE audit ALTER COLUMN version DROP NOT NULL;
ALTER TABLE audit ALTER COLUMN to_stage DROP NOT NULL;
-- A row is about a model version (as before) or about a feature schema.
ALTER TABLE audit ADD CONSTRAINT audit_names_its_subject CHECK (
    (model_name IS NOT NULL AND version IS NOT NULL AND to_stage IS NOT NULL)
    OR feature_schema_version IS NOT NULL
);
CREATE INDEX audit_by_feature_schema ON audit (feature_schema_version)
    WHERE feature_schema_version IS NOT NULL;
