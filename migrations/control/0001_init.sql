-- reshard control schema: checkpoints and dead letters.
CREATE TABLE IF NOT EXISTS reshard_checkpoint (
  pipeline        VARCHAR(64)       NOT NULL PRIMARY KEY,
  binlog_file     VARCHAR(255)      NOT NULL,
  binlog_pos      BIGINT UNSIGNED   NOT NULL,
  epoch           SMALLINT UNSIGNED NOT NULL,
  source_identity VARCHAR(255)      NOT NULL,
  updated_at      TIMESTAMP(6)      NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS reshard_dead_letter (
  id           BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  pipeline     VARCHAR(64)     NOT NULL,
  binlog_file  VARCHAR(255)    NOT NULL,
  binlog_pos   BIGINT UNSIGNED NOT NULL,
  source_table VARCHAR(192)    NOT NULL,
  row_key      TEXT            NOT NULL,
  error        TEXT            NOT NULL,
  row_image    LONGTEXT        NOT NULL,
  created_at   TIMESTAMP(6)    NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  KEY pipeline_pos (pipeline, binlog_file, binlog_pos)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
