"""``greensched serve``: the HTTP service."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from greensched.cli._app import (
    JsonOption,
    app,
    print_json,
)


@app.command()
def serve(
    scenario: Annotated[
        Path | None, typer.Option(help="Scenario directory (default: embedded).")
    ] = None,
    model: Annotated[
        Path | None, typer.Option(help="Predictor directory or model registry root (hot swap).")
    ] = None,
    coefficients: Annotated[
        Path | None, typer.Option(help="coefficients.csv instead of a model.")
    ] = None,
    plan: Annotated[Path | None, typer.Option(help="Plan directory for plan-guided mode.")] = None,
    store: Annotated[str | None, typer.Option(help="Outcome store path or URL.")] = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key_file: Annotated[
        Path | None, typer.Option(help="File holding the API key (else $GREENSCHED_API_KEY).")
    ] = None,
    mode: Annotated[str | None, typer.Option(help="greedy | plan | follow")] = None,
    ledger: Annotated[
        str | None,
        typer.Option(help="Durable capacity ledger: sqlite:///FILE (one node) or "
                     "postgresql://... (shared by replicas); default: in memory."),
    ] = None,
    request_timeout_s: Annotated[
        float, typer.Option(help="Seconds a client has to send a whole request.")
    ] = 10.0,
    max_connections: Annotated[int, typer.Option(help="Most open connections.")] = 1000,
    json_out: JsonOption = False,
) -> None:
    """Serve online assignment over HTTP (FastAPI): /v1/assign, /v1/outcomes, /metrics ...

    --json prints one JSON object on stdout once the socket is bound (--port 0 picks a free
    port), then serves: {url, host, port, pid, mode, scenario, model, registry, coefficients,
    plan, store, ledger, endpoints}; the API key is never printed; logs go to stderr.
    """
    from greensched.service import serve_command

    def ready(info: dict[str, Any]) -> None:
        print_json(info)
        sys.stdout.flush()

    serve_command(scenario, model, coefficients, plan, store, host, port, api_key_file,
                  mode=mode, ledger=ledger, request_timeout_s=request_timeout_s,
                  max_connections=max_connections, on_ready=ready if json_out else None)

