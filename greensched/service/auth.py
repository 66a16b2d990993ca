"""The ASGI gate in front of the application: API key, body size, request metrics."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from starlette.exceptions import HTTPException

from greensched.service.config import API_KEY_HEADER

if TYPE_CHECKING:  # pragma: no cover - typing only
    from greensched.service.core import GreenSchedService

__all__ = ["ENDPOINTS", "Gate", "send_json"]

#: Paths with their own label in the request metrics (anything else is "other").
ENDPOINTS = ("/v1/assign", "/v1/outcomes", "/v1/plan", "/v1/ledger", "/healthz", "/metrics",
             "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc")


async def send_json(send: Callable[[MutableMapping[str, Any]], Awaitable[None]], status: int,
                    payload: Any, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Answer with a JSON body straight from the ASGI layer."""
    body = json.dumps(payload).encode("utf-8")
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class Gate:
    """Pure ASGI middleware: API key on ``/v1/*``, body size limit, request metrics."""

    def __init__(self, app: Any, service: GreenSchedService) -> None:
        self.app = app
        self.service = service
        self.max_bytes = service.config.max_request_bytes
        self.metrics_auth = service.config.metrics_auth
        self.header = API_KEY_HEADER.lower().encode("latin-1")

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        path = scope.get("path", "")
        endpoint = path if path in ENDPOINTS else "other"
        status = [500]

        async def send_tracked(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            headers = scope.get("headers") or []
            if path.startswith("/v1/") or (self.metrics_auth and path == "/metrics"):
                key = next((v for k, v in headers if k == self.header), None)
                if not self.service.check_key(key):
                    what = "missing" if key is None else "invalid"
                    await send_json(send_tracked, 401, {
                        "detail": f"{what} API key: send the service's key in the "
                                  f"{API_KEY_HEADER} header"},
                        [(b"www-authenticate", b'ApiKey header="X-API-Key"')])
                    return
            if scope.get("method") in ("POST", "PUT", "PATCH"):
                length = next((v for k, v in headers if k == b"content-length"), None)
                if length is not None:
                    try:
                        too_big = int(length) > self.max_bytes
                    except ValueError:
                        await send_json(send_tracked, 400, {"detail": "bad Content-Length"})
                        return
                    if too_big:
                        await send_json(send_tracked, 413, self._too_large())
                        return
                receive = self._limited(receive)
            await self.app(scope, receive, send_tracked)
        finally:
            m = self.service.metrics
            m.requests.labels(endpoint, scope.get("method", ""), str(status[0])).inc()
            m.latency.labels(endpoint).observe(time.perf_counter() - t0)

    def _too_large(self) -> dict[str, Any]:
        return {"detail": f"request body larger than {self.max_bytes} bytes; send fewer jobs "
                          "per request"}

    def _limited(self, receive: Any) -> Callable[[], Awaitable[MutableMapping[str, Any]]]:
        seen = 0

        async def limited() -> MutableMapping[str, Any]:
            nonlocal seen
            message: MutableMapping[str, Any] = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise HTTPException(413, self._too_large()["detail"])
            return message

        return limited

