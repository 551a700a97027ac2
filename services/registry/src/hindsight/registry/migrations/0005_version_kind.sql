-- Model families (issue 16): a version is one model (`models/...`) or a family release
-- (`families/{family}/v{X}_{Y}_{Z}`, gated member by member, promoted as one unit). One
-- model_name holds versions of one kind only (the registry refuses the other).
ALTER TABLE versions ADD COLUMN kind text NOT NULL DEFAULT 'model'
    CHECK (kind IN ('model', 'family'));
UPDATE versions SET kind = 'family' WHERE artifact_uri LIKE 'families/%';
