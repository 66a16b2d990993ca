"""The ASGI gate in front of the application: API key, body size, request metrics."""

from __future__ import annotations

import json
import math
import re
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

from starlette.exceptions import HTTPException

from greensched.service.config import API_KEY_HEADER

if TYPE_CHECKING:  # pragma: no cover - typing only
    from greensched.service.core import GreenSchedService

__all__ = [
    "ENDPOINTS",
    "FailureLimiter",
    "Gate",
    "GateRoutes",
    "key_in_query",
    "redact_query",
    "send_json",
]

#: Query parameter names taken for an API key (refused, and redacted before logging).
_KEY_NAMES = re.compile(r"(?i)(api[-_]?key|apikey|x-api-key|^key$|token|secret)")

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


def key_in_query(query_string: bytes) -> bool:
    """Whether a query string carries something named like an API key."""
    if not query_string:
        return False
    for name, _ in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if _KEY_NAMES.search(name):
            return True
    return False


def redact_query(query_string: bytes) -> bytes:
    """The query string with the values of key-like parameters replaced by ``REDACTED``."""
    parts = []
    for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        parts.append((name, "REDACTED" if _KEY_NAMES.search(name) else value))
    return urlencode(parts).encode("latin-1")


class FailureLimiter:
    """Failed authentications per client address in a sliding window (429 above the limit)."""

    def __init__(self, per_minute: int, window_s: float = 60.0, max_clients: int = 10_000
                 ) -> None:
        self.limit = int(per_minute)
        self.window_s = float(window_s)
        self.max_clients = int(max_clients)
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, client: str, now: float) -> deque[float] | None:
        q = self._failures.get(client)
        if q is None:
            return None
        while q and q[0] <= now - self.window_s:
            q.popleft()
        if not q:
            del self._failures[client]
            return None
        return q

    def blocked_for_s(self, client: str) -> int:
        """Seconds until ``client`` may try again (0: not blocked)."""
        if self.limit <= 0:
            return 0
        now = time.monotonic()
        q = self._recent(client, now)
        if q is None or len(q) < self.limit:
            return 0
        return max(1, math.ceil(q[0] + self.window_s - now))

    def fail(self, client: str) -> None:
        """Count one failed authentication of ``client``."""
        if self.limit <= 0:
            return
        now = time.monotonic()
        q = self._recent(client, now)
        if q is None:
            q = self._failures[client] = deque(maxlen=self.limit)
            while len(self._failures) > self.max_clients:  # forget the oldest clients
                self._failures.popitem(last=False)
        q.append(now)


#: A direct route: the request body → the response (an ASGI application).
DirectRoute = Callable[[bytes], Awaitable[Any]]


class GateRoutes:
    """Routes the gate answers itself, by (method, path), filled in by ``create_app``."""

    def __init__(self) -> None:
        self.direct: dict[tuple[str, str], DirectRoute] = {}


class Gate:
    """Pure ASGI middleware: API key on ``/v1/*`` (header only; 429 after repeated failures),
    body size limit, request metrics.

    ``direct`` routes (``POST /v1/assign``) are answered here once the checks have passed:
    the body is read (within the size limit) and handed to the route's function, whose
    response is sent as it is; the framework's routing, the bulk of the CPU time of a small
    request, is skipped.  The application keeps the same route for the OpenAPI schema.
    """

    def __init__(self, app: Any, service: GreenSchedService,
                 direct: dict[tuple[str, str], DirectRoute] | None = None) -> None:
        self.app = app
        self.service = service
        self.direct = direct if direct is not None else {}
        self.max_bytes = service.config.max_request_bytes
        self.metrics_auth = service.config.metrics_auth
        self.header = API_KEY_HEADER.lower().encode("latin-1")
        self.limiter = FailureLimiter(service.config.auth_failures_per_min)

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
            query = scope.get("query_string") or b""
            if key_in_query(query):
                # never let the key reach a log: uvicorn's access log reads this same scope
                scope["query_string"] = redact_query(query)
                await send_json(send_tracked, 400, {
                    "detail": f"API keys in the URL are refused (URLs end up in logs and "
                              f"histories); send the key in the {API_KEY_HEADER} header"})
                return
            if path.startswith("/v1/") or (self.metrics_auth and path == "/metrics"):
                client = (scope.get("client") or ("?", 0))[0]
                wait = self.limiter.blocked_for_s(client)
                if wait:
                    self.service.metrics.rate_limited.inc()
                    await send_json(send_tracked, 429, {
                        "detail": f"too many failed authentications from {client}; retry in "
                                  f"{wait} s"}, [(b"retry-after", str(wait).encode())])
                    return
                key = next((v for k, v in headers if k == self.header), None)
                if not self.service.check_key(key):
                    self.limiter.fail(client)
                    self.service.metrics.auth_failures.inc()
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
            route = self.direct.get((scope.get("method", ""), path)) if self.direct else None
            if route is not None:
                await self._answer(route, scope, receive, send_tracked)
                return
            await self.app(scope, receive, send_tracked)
        finally:
            m = self.service.metrics
            m.requests.labels(endpoint, scope.get("method", ""), str(status[0])).inc()
            m.latency.labels(endpoint).observe(time.perf_counter() - t0)

    async def _answer(self, route: DirectRoute, scope: MutableMapping[str, Any], receive: Any,
                      send: Any) -> None:
        """Read the whole body, call ``route`` and send its response."""
        chunks: list[bytes] = []
        while True:
            try:
                message = await receive()
            except HTTPException as exc:  # over the size limit while streaming
                await send_json(send, exc.status_code, {"detail": exc.detail})
                return
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        response = await route(b"".join(chunks))
        await response(scope, receive, send)

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

