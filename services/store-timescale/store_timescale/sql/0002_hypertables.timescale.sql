-- TimescaleDB only: the time-partitioned tables of 0001 become hypertables
-- (chunks by time instead of the writer's monthly partitions).
SELECT create_hypertable('index_values', by_range('bucket_end', INTERVAL '30 days'), if_not_exists => TRUE);
SELECT create_hypertable('ray_values', by_range('bucket_end', INTERVAL '7 days'), if_not_exists => TRUE);
SELECT create_hypertable('peg_metrics', by_range('bucket_end', INTERVAL '7 days'), if_not_exists => TRUE);
SELECT create_hypertable('liquidity_metrics', by_range('bucket_end', INTERVAL '7 days'), if_not_exists => TRUE);
SELECT create_hypertable('pool_yields', by_range('event_time', INTERVAL '30 days'), if_not_exists => TRUE);
SELECT create_hypertable('market_caps', by_range('event_time', INTERVAL '30 days'), if_not_exists => TRUE);
