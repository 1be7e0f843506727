-- Parallel initial copy: a large table is copied in parts, ranges of its
-- row identity (last_key, upper_key], each with a cursor of its own. A
-- table copied whole is part 0 with no upper key (the rows of earlier
-- releases read exactly so).
ALTER TABLE reshard_snapshot_table
  ADD COLUMN part INT UNSIGNED NOT NULL DEFAULT 0 AFTER source_table,
  ADD COLUMN upper_key BLOB NULL AFTER last_key,
  DROP PRIMARY KEY,
  ADD PRIMARY KEY (pipeline, source_table, part);
