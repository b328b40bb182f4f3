"""CryptoCompare `GET /data/pricemultifull?fsyms=...&tsyms=USD` (optional USD price source).

Its errors arrive as HTTP 200 with `{"Response": "Error", "Message": ...}`: checked before
reading RAW. The key goes in the `authorization` header, never in a URL.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson
from pydantic import SecretStr

from ingest_defillama.source_http import SourceError, get_body


class CryptoCompareClient:
    def __init__(self, http: httpx.AsyncClient, base_url: str, api_key: SecretStr) -> None:
        self.http = http
        self.url = f"{base_url.rstrip('/')}/data/pricemultifull"
        self._headers = {"authorization": f"Apikey {api_key.get_secret_value()}"}

    async def usd_quotes(self, symbols: list[str]) -> dict[str, dict[str, Any]]:
        """symbol -> its RAW USD quote (PRICE, LASTUPDATE in unix seconds, ...); missing symbols are absent."""
        body = await get_body(self.http, self.url, "pricemultifull",
                              params={"fsyms": ",".join(symbols), "tsyms": "USD"}, headers=self._headers)
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise SourceError("malformed", "pricemultifull: body is not JSON") from None
        if not isinstance(parsed, dict):
            raise SourceError("malformed", "pricemultifull: expected an object")
        if parsed.get("Response") == "Error":
            kind = "rate_limited" if parsed.get("Type") == 99 else "api_error"
            raise SourceError(kind, f"pricemultifull: {str(parsed.get('Message'))[:200]}")
        raw = parsed.get("RAW")
        if not isinstance(raw, dict):
            raise SourceError("malformed", "pricemultifull: no RAW section")
        return {symbol: quotes["USD"] for symbol, quotes in raw.items()
                if isinstance(quotes, dict) and isinstance(quotes.get("USD"), dict)}
