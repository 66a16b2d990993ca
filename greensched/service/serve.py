"""``serve_command``: run the service with uvicorn (the ``greensched serve`` entry).

Server hygiene (loopback or behind a TLS proxy, but never trusting clients):

* a request must arrive whole (headers and body) within ``request_timeout_s`` of the
  connection opening or of the previous response, else the connection is closed (slow clients
  cannot hold connections open); idle keep-alive connections close after ``keep_alive_s``;
* at most ``max_connections`` connections are open at once (more are closed on accept), and
  at most ``limit_concurrency`` requests are in flight (uvicorn answers 503 above);
* the access log never shows an API key: keys are accepted in the ``X-API-Key`` header only,
  a key-like query parameter is refused with 400 and redacted before the request line is
  logged (:class:`RedactKeys` also filters uvicorn's access log).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from greensched.service.app import create_app
from greensched.service.auth import redact_query
from greensched.service.config import ServiceConfig, ServiceError

__all__ = ["RedactKeys", "serve_command", "service_info", "timed_protocol"]

log = logging.getLogger("greensched.service")


class RedactKeys(logging.Filter):
    """Replace key-like query parameters in uvicorn access-log lines by ``REDACTED``."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str) and (
            "?" in args[2]
        ):
            path, _, query = args[2].partition("?")
            safe = redact_query(query.encode("latin-1", "replace")).decode("latin-1")
            record.args = (*args[:2], f"{path}?{safe}", *args[3:])
        return True


def http_implementation() -> str:
    """``"httptools"`` (uvicorn's C parser, about a sixth less CPU per request) when installed,
    else ``"h11"`` (pure Python)."""
    try:
        import httptools  # noqa: F401
    except ImportError:
        return "h11"
    return "httptools"


def timed_protocol(request_timeout_s: float, max_connections: int,
                   impl: str | None = None) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol with a deadline to receive each request and a connection bound.

    The deadline starts when the connection opens and again after each response; it is
    cancelled once the request (headers and body) has been received.  ``impl``: ``"h11"`` or
    ``"httptools"`` (default: :func:`http_implementation`).
    """
    impl = impl or http_implementation()
    if impl == "httptools":
        return _timed_httptools(request_timeout_s, max_connections)
    if impl != "h11":
        raise ServiceError(f"unknown HTTP implementation {impl!r}; expected h11 or httptools")
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class TimedH11Protocol(_DeadlineMixin, H11Protocol):
        _timeout_s = request_timeout_s
        _max_connections = max_connections

        def _waiting(self) -> bool:
            return bool(self.conn.their_state is not h11.DONE)

        def handle_events(self) -> None:
            super().handle_events()
            if self.conn.their_state is h11.DONE:
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()

    return TimedH11Protocol


class _DeadlineMixin:
    """The deadline and connection bound shared by the timed h11 and httptools protocols:
    checked on connect, armed by :meth:`_arm`, cancelled by :meth:`_disarm` and on close;
    :meth:`_waiting` says whether the connection still owes a whole request."""

    _timeout_s: float
    _max_connections: int
    _deadline: asyncio.TimerHandle | None = None
    loop: asyncio.AbstractEventLoop
    connections: set[Any]
    transport: asyncio.Transport

    def _waiting(self) -> bool:  # pragma: no cover - each protocol defines it
        raise NotImplementedError

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        if len(self.connections) > self._max_connections:
            log.warning("more than %d connections open; closing a new one",
                        self._max_connections)
            transport.close()
            return
        self._arm()

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self._timeout_s, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self._waiting() and not self.transport.is_closing():
            log.info("closing a connection that did not send a whole request within %g s",
                     self._timeout_s)
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)  # type: ignore[misc]


def _timed_httptools(request_timeout_s: float, max_connections: int
                     ) -> type[asyncio.Protocol]:
    """:func:`timed_protocol` on uvicorn's httptools protocol: the same deadline (armed on
    connect and after each response, cancelled when a request has arrived whole; a request
    being answered is never cut) and connection bound."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class TimedHttpToolsProtocol(_DeadlineMixin, HttpToolsProtocol):
        _timeout_s = request_timeout_s
        _max_connections = max_connections
        _answering = 0  # requests received whole and not yet answered

        def _waiting(self) -> bool:
            return self._answering == 0

        def on_message_complete(self) -> None:
            # a request answered before it arrived whole (401, 413) leaves nothing to answer
            answering = self.cycle is not None and not self.cycle.response_complete
            super().on_message_complete()
            if answering:
                self._answering += 1
                self._disarm()

        def on_response_complete(self) -> None:
            self._answering = max(0, self._answering - 1)
            super().on_response_complete()
            if not self.transport.is_closing() and self._answering == 0:
                self._arm()

    return TimedHttpToolsProtocol


def _is_registry(path: Path) -> bool:
    return (path / "versions").is_dir() and not (path / "config.json").is_file()


def serve_command(
    scenario: Path | None = None,
    model: Path | None = None,
    coefficients: Path | None = None,
    plan: Path | None = None,
    store: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key_file: Path | None = None,
    workers: int = 1,
    *,
    mode: str | None = None,
    ledger: str | None = None,
    poll_interval_s: float = 1.0,
    batch_window_s: float = 0.002,
    max_batch_jobs: int = 1000,
    max_request_bytes: int = 1 << 20,
    request_timeout_s: float = 10.0,
    keep_alive_s: float = 5.0,
    max_connections: int = 1000,
    limit_concurrency: int = 2000,
    log_level: str = "info",
    access_log: bool = True,
    config_overrides: dict[str, Any] | None = None,
    on_ready: Callable[[dict[str, Any]], None] | None = None,
) -> None:
    """Run the service with uvicorn until interrupted (``greensched serve``).

    Parameters
    ----------
    scenario
        Scenario directory (``None``: the embedded default scenario).
    model
        A saved predictor directory, or a model registry root (a directory with ``versions/``),
        whose promoted version is served and hot-swapped on promotion.
    coefficients
        A ``coefficients.csv`` to predict from instead of a model.
    plan, store
        Plan directory; outcome store path or URL.
    host, port
        Where to listen (loopback by default; put TLS in front for anything else).
    api_key_file
        File holding the API key; without it, ``$GREENSCHED_API_KEY``.  The service refuses to
        start without a key.
    workers
        Must be 1: one process holds one in-memory ledger.  To scale out, run several
        services sharing a PostgreSQL ``ledger``.
    ledger
        Durable capacity ledger: ``sqlite:///file`` (one node) or ``postgresql://...`` (shared
        by replicas); ``None`` keeps reservations in memory only.
    mode, poll_interval_s, batch_window_s, max_batch_jobs, max_request_bytes
        See :class:`ServiceConfig`.
    request_timeout_s, keep_alive_s, max_connections, limit_concurrency
        Server hygiene, see the module docstring.
    log_level, access_log
        uvicorn's log level and whether it logs one line per request (headers, and so the
        API key, are never logged).
    config_overrides
        Further :class:`ServiceConfig` fields (benchmarks, tests).
    on_ready
        Called once the listening socket is bound (port 0 picks a free one), before requests
        are served, with :func:`service_info` of the bound address (``greensched serve
        --json``); uvicorn's access log then goes to stderr, not stdout.
    """
    if workers != 1:
        raise ServiceError(
            f"workers={workers!r}: the service runs one worker (one process holds one "
            "in-memory view of the ledger and batches requests inside it); to scale out, run "
            "several services sharing one durable ledger (--ledger postgresql://...)"
        )
    for name, v in (("request_timeout_s", request_timeout_s), ("keep_alive_s", keep_alive_s)):
        if not float(v) > 0:
            raise ServiceError(f"{name} must be > 0, got {v!r}")
    for name, n in (("max_connections", max_connections),
                    ("limit_concurrency", limit_concurrency)):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ServiceError(f"{name} must be a positive integer, got {n!r}")
    # OpenMP workers that spin while waiting cost more than they save on small batches.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    registry = None
    if model is not None and _is_registry(Path(model)):
        registry, model = model, None
    config = ServiceConfig(
        scenario=scenario, model=model, registry=registry, coefficients=coefficients,
        plan=plan, store=store, api_key_file=api_key_file, mode=mode, ledger=ledger,
        poll_interval_s=poll_interval_s, batch_window_s=batch_window_s,
        max_batch_jobs=max_batch_jobs, max_request_bytes=max_request_bytes,
        **(config_overrides or {}),
    )
    config.resolve_api_key()  # fail before loading anything
    app = create_app(config)
    if not _is_loopback(host):
        log.warning("serving on %s, which is not a loopback address: the API key travels in "
                    "clear text unless a TLS proxy is in front", host)
    import uvicorn

    logging.getLogger("uvicorn.access").addFilter(RedactKeys())
    options: dict[str, Any] = dict(
        log_level=log_level, access_log=access_log, server_header=False,
        http=timed_protocol(request_timeout_s, max_connections),
        timeout_keep_alive=int(max(1, round(keep_alive_s))),
        limit_concurrency=limit_concurrency, backlog=min(2048, max_connections))
    if on_ready is None:
        uvicorn.run(app, host=host, port=int(port), **options)
        return
    import copy
    import socket

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, int(port)))
    sock.listen(options["backlog"])  # clients that read the address may connect at once
    bound_host, bound_port = sock.getsockname()[:2]
    log_config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    log_config["handlers"]["access"]["stream"] = "ext://sys.stderr"
    server = uvicorn.Server(uvicorn.Config(app, host=bound_host, port=bound_port,
                                           log_config=log_config, **options))
    on_ready(service_info(config, app, bound_host, bound_port))
    server.run(sockets=[sock])


def service_info(config: ServiceConfig, app: Any, host: str, port: int) -> dict[str, Any]:
    """What a started service serves: ``url``, ``host``, ``port``, ``pid``, ``mode`` (``None``:
    plan with a plan, else greedy), ``scenario`` (``None``: the embedded default), the source
    of predictions (``model`` / ``registry`` / ``coefficients``), ``plan``, ``store``,
    ``ledger`` (``None``: in memory) and ``endpoints`` (the routes' paths).  The API key is
    never included, nor a password in a store or ledger URL."""
    import re

    shown = f"[{host}]" if ":" in host else host

    def text(v: Any) -> str | None:
        if v is None:
            return None
        raw = str(v) if isinstance(v, str | Path) else str(getattr(v, "name", v))
        return re.sub(r"(//[^/:@]*):[^/@]*@", r"\1:***@", raw)

    return {
        "url": f"http://{shown}:{port}", "host": host, "port": int(port), "pid": os.getpid(),
        "mode": None if config.mode is None else str(config.mode),
        "scenario": text(config.scenario), "model": text(config.model),
        "registry": text(config.registry), "coefficients": text(config.coefficients),
        "plan": text(config.plan), "store": text(config.store), "ledger": text(config.ledger),
        "endpoints": sorted({str(getattr(r, "path", "")) for r in getattr(app, "routes", [])
                             if getattr(r, "path", "").startswith(("/v1", "/healthz",
                                                                    "/metrics"))}),
    }


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
