-- Who holds each pipeline's lease (the named lock 'reshard:<pipeline>'):
-- the control connection that took it and the process behind it. A
-- process that lost its control connection re-takes the lease by killing
-- its own old connection, found here (docs/architecture.md, "Errors,
-- retries and ownership"); a process refused the lease names the holder.
CREATE TABLE IF NOT EXISTS reshard_lease (
  pipeline      VARCHAR(64)      NOT NULL PRIMARY KEY,
  connection_id BIGINT UNSIGNED  NOT NULL,
  host          VARCHAR(255)     NOT NULL,
  pid           INT UNSIGNED     NOT NULL,
  started_us    BIGINT UNSIGNED  NOT NULL,
  acquired_at   TIMESTAMP(6)     NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
