-- Keys (issue 8).
-- The copy's saved cursor holds the last key copied, losslessly encoded
-- (src/writer/keyenc.rs): a 3072-byte key (the most InnoDB allows) plus
-- 5 bytes of encoding per column does not fit VARBINARY(3072).
ALTER TABLE reshard_snapshot_table MODIFY COLUMN last_key BLOB NULL;

-- The weights of key collations learned from the source, per source build
-- (src/control/collations.rs), so that a restart need not learn them again.
CREATE TABLE IF NOT EXISTS reshard_collation (
  server_version VARCHAR(255)      NOT NULL,
  collation_name VARCHAR(64)       NOT NULL,
  collation_id   SMALLINT UNSIGNED NOT NULL,
  pad_space      TINYINT           NOT NULL,
  weights        LONGBLOB          NOT NULL,
  learned_at     TIMESTAMP(6)      NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  PRIMARY KEY (server_version, collation_name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
