-- TimescaleDB: continuous aggregates with the names and columns of the plain views
-- (0003_aggregates.plain.sql). Real-time (materialized_only = false): recent rows not yet
-- materialised are still included. A bucket is labelled by its start.

CREATE MATERIALIZED VIEW IF NOT EXISTS index_values_5m
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT index_id,
       time_bucket(INTERVAL '5 minutes', bucket_end) AS bucket,
       avg(syi_decimal)          AS syi_decimal,
       avg(syi_percent)          AS syi_percent,
       min(syi_decimal)          AS syi_decimal_min,
       max(syi_decimal)          AS syi_decimal_max,
       avg(tbill_apy_decimal)    AS tbill_apy_decimal,
       avg(risk_premium_decimal) AS risk_premium_decimal,
       avg(coverage)             AS coverage,
       count(*)                  AS samples
FROM index_values
WHERE NOT superseded
GROUP BY index_id, bucket
WITH NO DATA;
SELECT add_continuous_aggregate_policy('index_values_5m',
    start_offset => INTERVAL '3 days', end_offset => INTERVAL '5 minutes',
    schedule_interval => INTERVAL '1 minute', if_not_exists => TRUE);

CREATE MATERIALIZED VIEW IF NOT EXISTS index_values_1h
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT index_id,
       time_bucket(INTERVAL '1 hour', bucket_end) AS bucket,
       avg(syi_decimal)          AS syi_decimal,
       avg(syi_percent)          AS syi_percent,
       min(syi_decimal)          AS syi_decimal_min,
       max(syi_decimal)          AS syi_decimal_max,
       avg(tbill_apy_decimal)    AS tbill_apy_decimal,
       avg(risk_premium_decimal) AS risk_premium_decimal,
       avg(coverage)             AS coverage,
       count(*)                  AS samples
FROM index_values
WHERE NOT superseded
GROUP BY index_id, bucket
WITH NO DATA;
SELECT add_continuous_aggregate_policy('index_values_1h',
    start_offset => INTERVAL '3 days', end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '10 minutes', if_not_exists => TRUE);

CREATE MATERIALIZED VIEW IF NOT EXISTS index_values_1d
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT index_id,
       time_bucket(INTERVAL '1 day', bucket_end) AS bucket,
       avg(syi_decimal)          AS syi_decimal,
       avg(syi_percent)          AS syi_percent,
       min(syi_decimal)          AS syi_decimal_min,
       max(syi_decimal)          AS syi_decimal_max,
       avg(tbill_apy_decimal)    AS tbill_apy_decimal,
       avg(risk_premium_decimal) AS risk_premium_decimal,
       avg(coverage)             AS coverage,
       count(*)                  AS samples
FROM index_values
WHERE NOT superseded
GROUP BY index_id, bucket
WITH NO DATA;
SELECT add_continuous_aggregate_policy('index_values_1d',
    start_offset => INTERVAL '7 days', end_offset => INTERVAL '1 day',
    schedule_interval => INTERVAL '1 hour', if_not_exists => TRUE);

CREATE MATERIALIZED VIEW IF NOT EXISTS ray_values_5m
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT symbol,
       time_bucket(INTERVAL '5 minutes', bucket_end) AS bucket,
       avg(ray_decimal)          AS ray_decimal,
       min(ray_decimal)          AS ray_decimal_min,
       max(ray_decimal)          AS ray_decimal_max,
       avg(apy_eff_decimal)      AS apy_eff_decimal,
       avg(peg_score)            AS peg_score,
       avg(liquidity_score)      AS liquidity_score,
       avg(s_worst)              AS s_worst,
       avg(price_usd)            AS price_usd,
       count(*)                  AS samples
FROM ray_values
GROUP BY symbol, bucket
WITH NO DATA;
SELECT add_continuous_aggregate_policy('ray_values_5m',
    start_offset => INTERVAL '3 days', end_offset => INTERVAL '5 minutes',
    schedule_interval => INTERVAL '1 minute', if_not_exists => TRUE);

CREATE MATERIALIZED VIEW IF NOT EXISTS ray_values_1h
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT symbol,
       time_bucket(INTERVAL '1 hour', bucket_end) AS bucket,
       avg(ray_decimal)          AS ray_decimal,
       min(ray_decimal)          AS ray_decimal_min,
       max(ray_decimal)          AS ray_decimal_max,
       avg(apy_eff_decimal)      AS apy_eff_decimal,
       avg(peg_score)            AS peg_score,
       avg(liquidity_score)      AS liquidity_score,
       avg(s_worst)              AS s_worst,
       avg(price_usd)            AS price_usd,
       count(*)                  AS samples
FROM ray_values
GROUP BY symbol, bucket
WITH NO DATA;
SELECT add_continuous_aggregate_policy('ray_values_1h',
    start_offset => INTERVAL '3 days', end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '10 minutes', if_not_exists => TRUE);

CREATE MATERIALIZED VIEW IF NOT EXISTS ray_values_1d
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT symbol,
       time_bucket(INTERVAL '1 day', bucket_end) AS bucket,
       avg(ray_decimal)          AS ray_decimal,
       min(ray_decimal)          AS ray_decimal_min,
       max(ray_decimal)          AS ray_decimal_max,
       avg(apy_eff_decimal)      AS apy_eff_decimal,
       avg(peg_score)            AS peg_score,
       avg(liquidity_score)      AS liquidity_score,
       avg(s_worst)              AS s_worst,
       avg(price_usd)            AS price_usd,
       count(*)                  AS samples
FROM ray_values
GROUP BY symbol, bucket
WITH NO DATA;
SELECT add_continuous_aggregate_policy('ray_values_1d',
    start_offset => INTERVAL '7 days', end_offset => INTERVAL '1 day',
    schedule_interval => INTERVAL '1 hour', if_not_exists => TRUE);
