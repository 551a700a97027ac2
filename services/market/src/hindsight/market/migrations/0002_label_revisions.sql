-- Relabelling after a corrected bar (issue 15). A label remembers what it read: the open
-- times of the first and last bars (ATR history through horizon) and the signal's entry
-- price, so a correction inside that window can recompute it. A relabel replaces the row's
-- labels and raises its revision; the outbox keeps every revision that was published.
ALTER TABLE labels
    ADD COLUMN revision integer NOT NULL DEFAULT 0,
    ADD COLUMN entry_price double precision,
    ADD COLUMN window_start timestamptz,
    ADD COLUMN window_end timestamptz;
-- Labels written before this migration have no window (NULL): they are not relabelled.
CREATE INDEX labels_window ON labels (symbol, timeframe, label_spec, window_end)
    WHERE window_start IS NOT NULL;

-- When the Back-Labeler looked for labels a correction changes (NULL: not yet).
ALTER TABLE bar_corrections ADD COLUMN relabel_checked_at timestamptz;
-- Corrections made before this migration cannot find their labels (no windows): checked.
UPDATE bar_corrections SET relabel_checked_at = corrected_at;
CREATE INDEX bar_corrections_unchecked ON bar_corrections (id)
    WHERE relabel_checked_at IS NULL;
