-- Initial copy state, replay floor, lag bookkeeping.
ALTER TABLE reshard_checkpoint
  ADD COLUMN floor BINARY(16) NOT NULL DEFAULT '',
  ADD COLUMN source_ts INT UNSIGNED NOT NULL DEFAULT 0,
  ADD COLUMN epoch_file VARCHAR(255) NOT NULL DEFAULT '',
  ADD COLUMN epoch_pos BIGINT UNSIGNED NOT NULL DEFAULT 0;

-- The consistent snapshot position P of a pipeline's initial copy, saved
-- before any row is copied and reused by a resumed copy.
CREATE TABLE IF NOT EXISTS reshard_snapshot (
  pipeline    VARCHAR(64)     NOT NULL PRIMARY KEY,
  binlog_file VARCHAR(255)    NOT NULL,
  binlog_pos  BIGINT UNSIGNED NOT NULL,
  state       VARCHAR(16)     NOT NULL,
  started_at  TIMESTAMP(6)    NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  finished_at TIMESTAMP(6)    NULL DEFAULT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Per-table copy progress: the last key of the last finished chunk.
CREATE TABLE IF NOT EXISTS reshard_snapshot_table (
  pipeline      VARCHAR(64)     NOT NULL,
  source_table  VARCHAR(192)    NOT NULL,
  last_key      VARBINARY(3072) NULL,
  rows_copied   BIGINT UNSIGNED NOT NULL DEFAULT 0,
  rows_estimate BIGINT UNSIGNED NOT NULL DEFAULT 0,
  done          TINYINT         NOT NULL DEFAULT 0,
  PRIMARY KEY (pipeline, source_table)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Commit time of checkpointed positions (one row a minute at most), to
-- turn "7 days of binlog" into a tombstone pruning threshold.
CREATE TABLE IF NOT EXISTS reshard_position_log (
  pipeline    VARCHAR(64)     NOT NULL,
  commit_ts   INT UNSIGNED    NOT NULL,
  binlog_file VARCHAR(255)    NOT NULL,
  binlog_pos  BIGINT UNSIGNED NOT NULL,
  PRIMARY KEY (pipeline, commit_ts, binlog_file, binlog_pos)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
