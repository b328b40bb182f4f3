"""DefiLlama: yields `/pools` (streamed) and stablecoins `/stablecoins?includePrices=true`.

/pools is ~11 MB and ~17k pools, of which we keep a few dozen. ijson parses the body as
it arrives, so neither the whole text nor the whole parsed list is ever held: memory stays
at one network chunk plus the kept pools. /stablecoins is one ordinary parse (hundreds of
KB, and we need most of its top level anyway).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import ijson
import orjson

from ingest_defillama.source_http import SourceError, get_body, get_stream


class DefiLlamaClient:
    def __init__(self, http: httpx.AsyncClient, yields_url: str, stablecoins_url: str) -> None:
        self.http = http
        self.pools_url = f"{yields_url.rstrip('/')}/pools"
        self.stablecoins_url = f"{stablecoins_url.rstrip('/')}/stablecoins"

    async def pools(self, keep: Callable[[dict[str, Any]], bool]) -> tuple[list[dict[str, Any]], int]:
        """The pools `keep` accepts, and how many pools the body held. A body that does not
        parse to the end raises: nothing from a truncated response is used."""
        kept: list[dict[str, Any]] = []
        seen = 0
        async with get_stream(self.http, self.pools_url, "/pools") as response:
            items = ijson.sendable_list()
            parser = ijson.items_coro(items, "data.item", use_float=True)
            try:
                async for chunk in response.aiter_bytes():
                    parser.send(chunk)
                    for pool in items:
                        seen += 1
                        if isinstance(pool, dict) and keep(pool):
                            kept.append(pool)
                    del items[:]
                parser.close()
            except ijson.JSONError as exc:
                raise SourceError("malformed", f"/pools: body is not valid JSON ({str(exc).splitlines()[0]})") from None
        if seen == 0:
            raise SourceError("malformed", "/pools: no pools under data[]")
        return kept, seen

    async def stablecoins(self) -> list[dict[str, Any]]:
        body = await get_body(self.http, self.stablecoins_url, "/stablecoins", params={"includePrices": "true"})
        try:
            assets = orjson.loads(body)["peggedAssets"]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise SourceError("malformed", f"/stablecoins: not the expected JSON ({type(exc).__name__})") from None
        if not isinstance(assets, list):
            raise SourceError("malformed", "/stablecoins: peggedAssets is not a list")
        return assets
