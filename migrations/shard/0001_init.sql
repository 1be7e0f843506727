-- reshard per-shard tables, created in every target database.
-- Tombstones: one per deleted key, version only ever raised (GREATEST).
CREATE TABLE IF NOT EXISTS _reshard_tombstone (
  tbl     VARBINARY(192)  NOT NULL,
  k       VARBINARY(2048) NOT NULL,
  version BINARY(16)     NOT NULL,
  PRIMARY KEY (tbl, k),
  KEY by_version (version)
) ENGINE=InnoDB;

-- Last source position applied by each writer lane, written in the same
-- transaction as the lane's batch.
CREATE TABLE IF NOT EXISTS _reshard_applied (
  pipeline    VARCHAR(64)     NOT NULL,
  shard       VARCHAR(64)     NOT NULL,
  lane        INT UNSIGNED    NOT NULL,
  binlog_file VARCHAR(255)    NOT NULL,
  binlog_pos  BIGINT UNSIGNED NOT NULL,
  updated_at  TIMESTAMP(6)    NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
  PRIMARY KEY (pipeline, shard, lane)
) ENGINE=InnoDB;
