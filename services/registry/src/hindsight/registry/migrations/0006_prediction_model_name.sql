-- prediction.logged names the model or family that answered (issue 16: a Predict answer is
-- logged with model_name = the family, model_version = the family release). Kept so that
-- joins by version never mix two models whose versions are spelled alike (two families'
-- v1_0_0). NULL: an answer logged without it (Score, events from before), matched by version
-- alone as before.
ALTER TABLE predictions ADD COLUMN model_name text;
