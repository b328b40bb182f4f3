-- Every stored topic, one table each. Natural keys are the primary keys, so a redelivered
-- message lands on its own row (idempotent upserts). `record` keeps the whole message as
-- published; the typed columns are what queries filter and aggregate on.
-- The partition_by:<column> placeholder (in double braces) becomes `PARTITION BY RANGE (<column>)` on plain PostgreSQL
-- (monthly partitions, created by the writer) and nothing under TimescaleDB (hypertables, 0002).

CREATE TABLE IF NOT EXISTS index_values (
    index_id              text        NOT NULL,
    bucket_end            timestamptz NOT NULL,
    revision              integer     NOT NULL,
    syi_decimal           double precision NOT NULL,
    syi_percent           double precision NOT NULL,
    status                text        NOT NULL,
    coverage              double precision NOT NULL,
    hhi                   double precision NOT NULL,
    tbill_apy_decimal     double precision,
    risk_premium_decimal  double precision,
    methodology_version   text        NOT NULL,
    flags                 text[]      NOT NULL,
    inputs_max_event_time timestamptz,
    published_at          timestamptz NOT NULL,
    input_cid             text        NOT NULL,
    prev_cid              text,
    cid                   text        NOT NULL,
    supersedes_cid        text,
    -- true once a higher revision of the same bucket is stored: aggregates skip it
    superseded            boolean     NOT NULL DEFAULT false,
    record                jsonb       NOT NULL,
    stored_at             timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (index_id, bucket_end, revision)
) {{partition_by:bucket_end}};

CREATE TABLE IF NOT EXISTS ray_values (
    symbol               text        NOT NULL,
    bucket_end           timestamptz NOT NULL,
    price_usd            double precision,
    dev_bps              double precision,
    peg_score            double precision,
    sigma_peg_pct        double precision,
    depth_usd            double precision,
    liquidity_score      double precision,
    counterparty_score   double precision NOT NULL,
    apy_eff_decimal      double precision,
    s_worst              double precision,
    ray_decimal          double precision,
    flags                text[]      NOT NULL,
    methodology_version  text        NOT NULL,
    record               jsonb       NOT NULL,
    stored_at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, bucket_end)
) {{partition_by:bucket_end}};

CREATE TABLE IF NOT EXISTS peg_metrics (
    symbol               text        NOT NULL,
    bucket_end           timestamptz NOT NULL,
    price_usd            double precision,
    dev_bps              double precision,
    peg_score            double precision,
    sigma_peg_pct        double precision,
    venues               integer     NOT NULL,
    flags                text[]      NOT NULL,
    methodology_version  text        NOT NULL,
    record               jsonb       NOT NULL,
    stored_at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, bucket_end)
) {{partition_by:bucket_end}};

CREATE TABLE IF NOT EXISTS liquidity_metrics (
    symbol               text        NOT NULL,
    bucket_end           timestamptz NOT NULL,
    depth_usd            double precision,
    liquidity_score      double precision,
    books                integer     NOT NULL,
    flags                text[]      NOT NULL,
    methodology_version  text        NOT NULL,
    record               jsonb       NOT NULL,
    stored_at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, bucket_end)
) {{partition_by:bucket_end}};

CREATE TABLE IF NOT EXISTS pool_yields (
    pool                 text        NOT NULL,
    event_time           timestamptz NOT NULL,
    project              text        NOT NULL,
    chain                text        NOT NULL,
    symbol               text        NOT NULL,
    tvl_usd              double precision NOT NULL,
    apy_base_pct         double precision,
    apy_reward_pct       double precision,
    apy_pct              double precision,
    stablecoin           boolean     NOT NULL,
    exposure             text        NOT NULL,
    ingest_time          timestamptz NOT NULL,
    record               jsonb       NOT NULL,
    stored_at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (pool, event_time)
) {{partition_by:event_time}};

CREATE TABLE IF NOT EXISTS market_caps (
    symbol               text        NOT NULL,
    event_time           timestamptz NOT NULL,
    market_cap_usd       double precision NOT NULL,
    price_usd            double precision,
    source               text        NOT NULL,
    ingest_time          timestamptz NOT NULL,
    record               jsonb       NOT NULL,
    stored_at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, event_time)
) {{partition_by:event_time}};

-- One row a day per series: small enough to stay a plain table in both modes.
CREATE TABLE IF NOT EXISTS tbills (
    series               text        NOT NULL,
    observation_date     date        NOT NULL,
    rate_pct             double precision NOT NULL,
    basis                text        NOT NULL,
    source               text        NOT NULL,
    event_time           timestamptz NOT NULL,
    ingest_time          timestamptz NOT NULL,
    record               jsonb       NOT NULL,
    stored_at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (series, observation_date)
);

-- "newest value of a pool / symbol" lookups
CREATE INDEX IF NOT EXISTS pool_yields_symbol_time ON pool_yields (symbol, event_time DESC);
