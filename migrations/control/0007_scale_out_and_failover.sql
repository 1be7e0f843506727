-- Scale-out (docs/architecture.md, "Scale-out: shard subsets"): several
-- processes tail one source, each applying a disjoint subset of the target
-- shards ([pipeline] shards), each subset with its own checkpoint row.

-- A lease per shard: the named lock 'reshard:<pipeline>:<shard>', held by
-- the control connection of the one process that applies the shard. The
-- rows of the pipeline-wide lease of earlier releases are dropped: they
-- only named past holders.
DELETE FROM reshard_lease;
ALTER TABLE reshard_lease
  ADD COLUMN shard VARCHAR(64) NOT NULL DEFAULT '' AFTER pipeline,
  ADD COLUMN holder VARCHAR(64) NOT NULL DEFAULT '' AFTER shard,
  ADD COLUMN server_id INT UNSIGNED NOT NULL DEFAULT 0 AFTER started_us,
  DROP PRIMARY KEY,
  ADD PRIMARY KEY (pipeline, shard);

-- Every checkpoint row's shards: its key (reshard_checkpoint.pipeline,
-- `name` or `name/s0,s1`), the configured pipeline name it belongs to,
-- and its shards ('' = every shard of [targets]). Status lists a
-- pipeline's subsets from here; a new subset resumes its shards from the
-- rows that applied them before.
CREATE TABLE IF NOT EXISTS reshard_subset (
  pipeline      VARCHAR(64)  NOT NULL PRIMARY KEY,
  base_pipeline VARCHAR(64)  NOT NULL,
  shards        TEXT         NOT NULL,
  registered_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
  KEY by_base (base_pipeline)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

INSERT IGNORE INTO reshard_subset (pipeline, base_pipeline, shards)
  SELECT pipeline, pipeline, '' FROM reshard_checkpoint;

-- Failover safety (docs/architecture.md, "Errors, retries and ownership"):
-- a position at or before the checkpoint and the GTID state the source
-- reported for it (MariaDB's BINLOG_GTID_POS). A source restored from a
-- backup, reset or failed over to a lagging server no longer includes it,
-- and `run` refuses to resume.
ALTER TABLE reshard_checkpoint
  ADD COLUMN anchor_file VARCHAR(255) NOT NULL DEFAULT '',
  ADD COLUMN anchor_pos BIGINT UNSIGNED NOT NULL DEFAULT 0,
  ADD COLUMN anchor_gtid VARCHAR(4096) CHARACTER SET ascii NOT NULL DEFAULT '';
