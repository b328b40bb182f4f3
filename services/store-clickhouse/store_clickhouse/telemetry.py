"""This service's name in its metrics. The metrics themselves are the store loop's
(syi_shared.store_loop): every store writer counts the same things under the same names."""

from __future__ import annotations

SERVICE = "store-clickhouse"
