-- Dead letters that `reshard dead-letters retry` can re-drive through the
-- current rules: the row change itself (schema, before and after images,
-- as JSON), its version and event length (column versions need it), and
-- the expression that failed. Rows recorded before this migration have
-- none of them: they can be listed and dropped, not retried.
ALTER TABLE reshard_dead_letter
  ADD COLUMN version BINARY(16) NULL,
  ADD COLUMN span BIGINT UNSIGNED NULL,
  ADD COLUMN expression TEXT NULL,
  ADD COLUMN change_json LONGTEXT NULL,
  ADD KEY pipeline_table (pipeline, source_table);
