-- The copy's saved cursor holds the last key copied, losslessly encoded
-- (src/writer/keyenc.rs): a 3072-byte key (the most InnoDB allows) plus
-- 5 bytes of encoding per column does not fit VARBINARY(3072).
ALTER TABLE reshard_snapshot_table MODIFY COLUMN last_key BLOB NULL;
