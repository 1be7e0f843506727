-- The schema history of each mapped source table: its columns from the
-- position at which they became valid (the pipeline's start, or the end of
-- a DDL on the table), so that events written before a DDL decode with the
-- columns they were written with when the binlog does not name them
-- (binlog_row_metadata is not FULL). Positions are of one source server:
-- the history is kept per epoch.
CREATE TABLE IF NOT EXISTS reshard_schema_history (
  pipeline     VARCHAR(64)       NOT NULL,
  epoch        SMALLINT UNSIGNED NOT NULL,
  source_db    VARCHAR(64)       NOT NULL,
  source_table VARCHAR(64)       NOT NULL,
  binlog_file  VARCHAR(255)      NOT NULL,
  binlog_pos   BIGINT UNSIGNED   NOT NULL,
  -- known: the columns are in columns_json; absent: the table does not
  -- exist; unknown: reshard cannot know them (note says why)
  state        VARCHAR(16)       NOT NULL,
  columns_json LONGTEXT          NOT NULL,
  create_sql   LONGTEXT          NOT NULL,
  note         TEXT              NOT NULL,
  recorded_at  TIMESTAMP(6)      NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  PRIMARY KEY (pipeline, epoch, source_db, source_table, binlog_file, binlog_pos)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
