-- Plain PostgreSQL: the aggregates are ordinary views with the names and columns of the
-- TimescaleDB continuous aggregates (0003_aggregates.timescale.sql), so every query runs on both.
-- A bucket is labelled by its start and holds the rows whose bucket_end falls in
-- [bucket, bucket + interval). Superseded revisions are left out.
-- The expression indexes let a range filter on `bucket` use an index instead of a scan.

CREATE INDEX IF NOT EXISTS index_values_5m_bucket
    ON index_values (index_id, date_bin(INTERVAL '5 minutes', bucket_end, TIMESTAMPTZ '2000-01-01 00:00:00+00'));
CREATE OR REPLACE VIEW index_values_5m AS
SELECT index_id,
       date_bin(INTERVAL '5 minutes', bucket_end, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket,
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
GROUP BY index_id, bucket;

CREATE INDEX IF NOT EXISTS index_values_1h_bucket
    ON index_values (index_id, date_bin(INTERVAL '1 hour', bucket_end, TIMESTAMPTZ '2000-01-01 00:00:00+00'));
CREATE OR REPLACE VIEW index_values_1h AS
SELECT index_id,
       date_bin(INTERVAL '1 hour', bucket_end, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket,
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
GROUP BY index_id, bucket;

CREATE INDEX IF NOT EXISTS index_values_1d_bucket
    ON index_values (index_id, date_bin(INTERVAL '1 day', bucket_end, TIMESTAMPTZ '2000-01-01 00:00:00+00'));
CREATE OR REPLACE VIEW index_values_1d AS
SELECT index_id,
       date_bin(INTERVAL '1 day', bucket_end, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket,
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
GROUP BY index_id, bucket;

CREATE INDEX IF NOT EXISTS ray_values_5m_bucket
    ON ray_values (symbol, date_bin(INTERVAL '5 minutes', bucket_end, TIMESTAMPTZ '2000-01-01 00:00:00+00'));
CREATE OR REPLACE VIEW ray_values_5m AS
SELECT symbol,
       date_bin(INTERVAL '5 minutes', bucket_end, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket,
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
GROUP BY symbol, bucket;

CREATE INDEX IF NOT EXISTS ray_values_1h_bucket
    ON ray_values (symbol, date_bin(INTERVAL '1 hour', bucket_end, TIMESTAMPTZ '2000-01-01 00:00:00+00'));
CREATE OR REPLACE VIEW ray_values_1h AS
SELECT symbol,
       date_bin(INTERVAL '1 hour', bucket_end, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket,
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
GROUP BY symbol, bucket;

CREATE INDEX IF NOT EXISTS ray_values_1d_bucket
    ON ray_values (symbol, date_bin(INTERVAL '1 day', bucket_end, TIMESTAMPTZ '2000-01-01 00:00:00+00'));
CREATE OR REPLACE VIEW ray_values_1d AS
SELECT symbol,
       date_bin(INTERVAL '1 day', bucket_end, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket,
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
GROUP BY symbol, bucket;
