"""``serve_command``: run the service with uvicorn (the ``greensched serve`` entry)."""

from __future__ import annotations

import ipaddress
import logging
import os
from pathlib import Path

from greensched.service.app import create_app
from greensched.service.config import ServiceConfig, ServiceError

__all__ = ["serve_command"]

log = logging.getLogger("greensched.service")

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
    poll_interval_s: float = 1.0,
    batch_window_s: float = 0.002,
    max_batch_jobs: int = 1000,
    max_request_bytes: int = 1 << 20,
    log_level: str = "info",
    access_log: bool = True,
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
        Must be 1: the capacity ledger lives in the process, and several workers would each
        hand out the full capacity.
    mode, poll_interval_s, batch_window_s, max_batch_jobs, max_request_bytes
        See :class:`ServiceConfig`.
    log_level, access_log
        uvicorn's log level and whether it logs one line per request (headers, and so the
        API key, are never logged).
    """
    if workers != 1:
        raise ServiceError(
            f"workers={workers!r}: the capacity ledger is kept in one process, so the service "
            "runs with one worker (requests are batched inside it); run several services with "
            "separate scenarios/capacity shares to scale out"
        )
    # OpenMP workers that spin while waiting cost more than they save on small batches.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    registry = None
    if model is not None and _is_registry(Path(model)):
        registry, model = model, None
    config = ServiceConfig(
        scenario=scenario, model=model, registry=registry, coefficients=coefficients,
        plan=plan, store=store, api_key_file=api_key_file, mode=mode,
        poll_interval_s=poll_interval_s, batch_window_s=batch_window_s,
        max_batch_jobs=max_batch_jobs, max_request_bytes=max_request_bytes,
    )
    config.resolve_api_key()  # fail before loading anything
    app = create_app(config)
    if not _is_loopback(host):
        log.warning("serving on %s, which is not a loopback address: the API key travels in "
                    "clear text unless a TLS proxy is in front", host)
    import uvicorn

    uvicorn.run(app, host=host, port=int(port), log_level=log_level, access_log=access_log,
                server_header=False)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
