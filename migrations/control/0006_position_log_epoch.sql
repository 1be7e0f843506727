-- The epoch each logged position was versioned under, so the tombstone
-- pruning threshold is computed within one epoch (docs/architecture.md,
-- "Tombstones and the floor"). Rows logged before this migration take the
-- pipeline's current epoch, which is what the pruning of older builds
-- assumed for them.
ALTER TABLE reshard_position_log
  ADD COLUMN epoch SMALLINT UNSIGNED NOT NULL DEFAULT 0 AFTER pipeline,
  DROP PRIMARY KEY,
  ADD PRIMARY KEY (pipeline, epoch, commit_ts, binlog_file, binlog_pos);

UPDATE reshard_position_log l JOIN reshard_checkpoint c ON c.pipeline = l.pipeline
  SET l.epoch = c.epoch;
