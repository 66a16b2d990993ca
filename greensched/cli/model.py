"""``greensched model register|promote|rollback|list|show``: the model registry by hand."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from greensched.cli._app import JsonOption, app, console, print_json
from greensched.feedback.models import register_model, registry_rows, require_current
from greensched.feedback.registry import ModelRegistry, RegistryError

__all__ = ["model_app"]

model_app = typer.Typer(no_args_is_help=True,
                        help="Register, promote, roll back and list predictor versions.")
app.add_typer(model_app, name="model")

RegistryOption = Annotated[
    Path, typer.Option("--registry", "-r", help="Model registry root (versions/, CURRENT).")
]


def _existing(registry: Path) -> ModelRegistry:
    if not (registry / "versions").is_dir():
        raise RegistryError(f"no model registry at {registry}: register a model first "
                            f"(greensched model register MODEL_DIR --registry {registry})")
    return ModelRegistry(registry)


@model_app.command("register")
def model_register(
    model_dir: Annotated[Path, typer.Argument(help="A saved predictor (greensched train --out).")],
    registry: RegistryOption = Path("models"),
    promote: Annotated[bool, typer.Option(help="Make it the current version at once.")] = False,
    notes: Annotated[str, typer.Option(help="Free text kept with the version.")] = "",
    json_out: JsonOption = False,
) -> None:
    """Copy a trained model into the registry as a new version (atomic)."""
    info = register_model(registry, model_dir, promote=promote, notes=notes)
    if json_out:
        print_json({**asdict(info), "promoted": promote})
        return
    console.print(f"registered {model_dir} as [bold]{info.version}[/] ({info.kind}) in "
                  f"{registry}" + ("; promoted" if promote else
                                   f"; promote it with greensched model promote "
                                   f"{info.version} --registry {registry}"))


@model_app.command("promote")
def model_promote(
    version: Annotated[str, typer.Argument(help="Version to make current, e.g. v0002.")],
    registry: RegistryOption = Path("models"),
    json_out: JsonOption = False,
) -> None:
    """Make VERSION the current one (services polling the registry swap it in)."""
    reg = _existing(registry)
    previous = reg.current()
    reg.promote(version, reason="greensched model promote")
    if json_out:
        print_json({"current": version, "previous": previous})
        return
    console.print(f"promoted [bold]{version}[/] in {registry} (was {previous or 'none'})")


@model_app.command("rollback")
def model_rollback(
    registry: RegistryOption = Path("models"),
    json_out: JsonOption = False,
) -> None:
    """Return to the version that was current before the current one."""
    reg = _existing(registry)
    previous = require_current(reg)
    target = reg.rollback(reason="greensched model rollback")
    if json_out:
        print_json({"current": target, "previous": previous})
        return
    console.print(f"rolled back {registry} from {previous} to [bold]{target}[/]")


@model_app.command("list")
def model_list(
    registry: RegistryOption = Path("models"),
    json_out: JsonOption = False,
) -> None:
    """Registered versions, oldest first; the current one is marked."""
    rows = registry_rows(_existing(registry))
    if json_out:
        print_json(rows)
        return
    table = Table(title=f"Model registry {registry}")
    for col in ("version", "current", "kind", "parent", "created (UTC)", "energy MAPE",
                "service MAPE", "notes"):
        table.add_column(col, justify="right" if "MAPE" in col else "left", overflow="fold")
    for r in rows:
        table.add_row(r["version"], "*" if r["current"] else "", r["kind"] or "",
                      r["parent"] or "", r["created_at"],
                      "" if r["energy_mape"] is None else f"{r['energy_mape']:.1%}",
                      "" if r["service_mape"] is None else f"{r['service_mape']:.1%}",
                      r["notes"])
    console.print(table)


@model_app.command("show")
def model_show(
    version: Annotated[str | None, typer.Argument(help="Version (default: the current).")] = None,
    registry: RegistryOption = Path("models"),
    json_out: JsonOption = False,
) -> None:
    """Metadata, lineage and promotion history of one version."""
    reg = _existing(registry)
    v = version or require_current(reg)
    info = reg.info(v)
    events = [e for e in reg.history() if v in (e.get("version"), e.get("previous"))]
    out = {**asdict(info), "current": reg.current() == v, "lineage": reg.lineage(v),
           "path": str(reg.path(v)), "history": events}
    if json_out:
        print_json(out)
        return
    table = Table(title=f"Model version {v}" + (" (current)" if out["current"] else ""),
                  show_header=False)
    table.add_column("field")
    table.add_column("value", overflow="fold")
    for key in ("kind", "created_at", "parent", "path", "notes"):
        table.add_row(key, str(out[key] or ""))
    table.add_row("lineage", " <- ".join(out["lineage"]))
    for target, m in (info.metrics.get("validation") or {}).items():
        table.add_row(f"validation {target}",
                      ", ".join(f"{k} {val:.4g}" for k, val in m.items()))
    for e in events:
        table.add_row(e.get("event", ""), f"{e.get('at', '')}: {e.get('previous')} -> "
                      f"{e.get('version')} {e.get('reason', '')}".rstrip())
    console.print(table)
