-- Memory's link table: one row per vector, whatever Chroma collection holds it.
CREATE TABLE records (
    vector_id          text PRIMARY KEY,
    collection         text NOT NULL,          -- logical: trade_cases, theory_docs, prompts_history
    physical           text NOT NULL,          -- Chroma collection {collection}__{modality}__{slug}
    modality           text NOT NULL,
    model              text NOT NULL,
    file_path          text,
    run_id             text,
    trade_id           text,
    setup_id           text,
    "timestamp"        timestamptz NOT NULL,
    document           text,
    document_tsv       tsvector GENERATED ALWAYS AS
                           (to_tsvector('english', coalesce(document, ''))) STORED,
    metadata           jsonb NOT NULL,         -- full metadata, null values kept
    thumbnail_b64      text,
    user_label         text,
    quality_grade      text,
    archived_at        timestamptz,
    archived_embedding real[],                 -- kept while archived, so it can be restored
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX records_run_id ON records (run_id);
CREATE INDEX records_trade_id ON records (trade_id);
CREATE INDEX records_collection_ts ON records (collection, "timestamp");
CREATE INDEX records_document_tsv ON records USING gin (document_tsv);

-- The latest label per (trade_id, labeler_id); a record shows the trade's latest one.
CREATE TABLE labels (
    trade_id      text NOT NULL,
    labeler_id    text NOT NULL,
    label         text NOT NULL,
    quality_grade text,
    occurred_at   timestamptz NOT NULL,
    PRIMARY KEY (trade_id, labeler_id)
);
