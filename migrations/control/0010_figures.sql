-- The figures of the process applying each checkpoint row (its metrics:
-- rows applied, events read, lag, retries, stalls, throttling), as JSON,
-- kept every progress_interval_secs by `run` and `replay` so that
-- `status` shows them from any host (src/metrics/figures.rs).
CREATE TABLE IF NOT EXISTS reshard_figures (
  pipeline   VARCHAR(64)     NOT NULL PRIMARY KEY,
  host       VARCHAR(255)    NOT NULL,
  pid        INT UNSIGNED    NOT NULL,
  figures    MEDIUMTEXT      NOT NULL,
  updated_at TIMESTAMP(6)    NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
