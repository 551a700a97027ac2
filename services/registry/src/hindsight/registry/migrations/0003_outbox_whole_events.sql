-- Data only, no schema change: an outbox row now holds the whole event as it is published
-- (schema_version, source and, for model.deployed, deployment_id included), built once by
-- the code that queues it. Rows queued by an earlier release and not published yet get the
-- fields that release's relay added when publishing; published rows stay as they were.
UPDATE outbox
SET payload = payload
    || jsonb_build_object('schema_version', 1, 'source', 'registry')
    || CASE WHEN subject = 'model.deployed'
            THEN jsonb_build_object('deployment_id', 'registry-' || id)
            ELSE '{}'::jsonb END
WHERE sent_at IS NULL AND NOT payload ? 'source';
