-- The labeling queue: one item per trade, built from png.created and json.created.
CREATE TABLE items (
    trade_id text PRIMARY KEY,
    run_id text,
    symbol text,
    timeframe text,
    setup_id text,
    original_path text,          -- file_path as given in png.created (image_type original)
    annotated_path text,
    trade jsonb,                 -- trade_meta payload (closed supersedes open)
    trade_state text,            -- open | closed
    suggestion jsonb,            -- llm_suggestion payload
    suggestion_label text,
    trade_time timestamptz,      -- opened_at, else the first event's occurred_at
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX items_symbol ON items (symbol);
CREATE INDEX items_run ON items (run_id);
CREATE INDEX items_time ON items (trade_time);

-- The current label of each trade (mirrors labels/{trade_id}_label.json).
CREATE TABLE labels (
    trade_id text PRIMARY KEY REFERENCES items (trade_id),
    label text NOT NULL CHECK (label IN ('approved', 'rejected', 'review')),
    quality_grade text,
    user_comment text,
    llm_agreed boolean,
    labeler_id text NOT NULL,
    occurred_at timestamptz NOT NULL,
    screenshot text,
    chroma_vector_id text
);

-- Every label decision, for undo: what the trade's label was before it.
CREATE TABLE label_history (
    id bigserial PRIMARY KEY,
    trade_id text NOT NULL,
    labeler_id text NOT NULL,
    label text NOT NULL,
    occurred_at timestamptz NOT NULL,
    previous jsonb,              -- the labels row before this decision; null = unlabeled
    undone_at timestamptz
);
CREATE INDEX label_history_labeler ON label_history (labeler_id, id DESC);

CREATE TABLE labelers (
    labeler_id text PRIMARY KEY,
    password_hash text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sessions (
    token_hash text PRIMARY KEY,
    labeler_id text NOT NULL REFERENCES labelers (labeler_id) ON DELETE CASCADE,
    csrf_token text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);

-- label.saved events written with their label, published after commit; retried until sent.
CREATE TABLE outbox (
    id bigserial PRIMARY KEY,
    subject text NOT NULL,
    body text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    attempts integer NOT NULL DEFAULT 0,
    last_error text
);
