"""Request bodies: JSON parsing with a nesting limit, and FastAPI-style 422 bodies.

Every endpoint that reads a body goes through :func:`parse_json`: a body nested deeper than
``max_depth`` arrays/objects is refused with 422 before validation, its ``loc`` naming the path
to the first value that is too deep (``["body", "features", "a", "a", ...]``), so that neither
the JSON decoder nor pydantic can recurse without bound.
"""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi.responses import JSONResponse

__all__ = ["json_safe", "parse_json", "too_deep", "unprocessable", "validation_errors"]

_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{},:]')


def validation_errors(exc: Any, prefix: tuple[Any, ...]) -> list[dict[str, Any]]:
    """Pydantic errors in FastAPI's ``detail`` format, locations prefixed."""
    out = []
    for err in exc.errors(include_url=False):
        item = {"type": err["type"], "loc": [*prefix, *err["loc"]], "msg": err["msg"],
                "input": err.get("input")}
        if err.get("ctx"):
            item["ctx"] = {k: (v if isinstance(v, int | float | str | bool) or v is None
                               else str(v)) for k, v in err["ctx"].items()}
        out.append(item)
    return out


def json_safe(value: Any) -> Any:
    """Inputs echoed in errors may hold values json cannot write (NaN from a client's JSON)."""
    try:
        json.dumps(value, allow_nan=False)
        return value
    except (TypeError, ValueError, RecursionError):
        text = repr(value) if not isinstance(value, dict | list) else type(value).__name__
        return text[:200]


def unprocessable(errors: list[dict[str, Any]]) -> JSONResponse:
    """A 422 response with ``{"detail": errors}``."""
    for e in errors:
        e["input"] = json_safe(e.get("input"))
    return JSONResponse({"detail": errors}, status_code=422)


def too_deep(payload: Any, max_depth: int) -> list[Any] | None:
    """Path (keys and indices) to the first container nested deeper than ``max_depth``, or
    ``None``; iterative, so any depth is safe."""
    stack: list[tuple[Any, int, list[Any]]] = [(payload, 1, [])]
    while stack:
        value, depth, path = stack.pop()
        if isinstance(value, dict):
            items: Any = value.items()
        elif isinstance(value, list):
            items = enumerate(value)
        else:
            continue
        if depth > max_depth:
            return path
        for key, child in items:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1, [*path, key]))
    return None


def _scan_depth(body: bytes, max_depth: int) -> list[Any]:
    """Path to the first too-deep container, from the raw bytes (for bodies too deep to
    decode); object keys and array indices as far as the scan can tell."""
    path: list[Any] = []
    kinds: list[bytes] = []
    last_string: bytes | None = None
    for m in _TOKENS.finditer(body):
        tok = m.group()
        if tok in (b"[", b"{"):
            if len(kinds) >= max_depth:
                return path
            kinds.append(tok)
            path.append(0 if tok == b"[" else None)
        elif tok in (b"]", b"}"):
            if kinds:
                kinds.pop()
                path.pop()
        elif tok == b",":
            if kinds and kinds[-1] == b"[":
                path[-1] += 1
        elif tok == b":":
            if kinds and kinds[-1] == b"{" and last_string is not None:
                try:
                    path[-1] = json.loads(last_string)
                except ValueError:
                    path[-1] = None
        else:
            last_string = tok
    return path


def parse_json(body: bytes, max_depth: int) -> tuple[Any, JSONResponse | None]:
    """(payload, None), or (None, a 422 response): invalid JSON, or nested too deep."""
    try:
        payload = json.loads(body)
    except RecursionError:
        return None, _deep(_scan_depth(body, max_depth), max_depth)
    except (ValueError, UnicodeDecodeError) as exc:
        pos = getattr(exc, "pos", 0)
        return None, unprocessable([{"type": "json_invalid", "loc": ["body", pos],
                                     "msg": f"JSON decode error: {exc}", "input": {}}])
    path = too_deep(payload, max_depth)
    if path is not None:
        return None, _deep(path, max_depth)
    return payload, None


def _deep(path: list[Any], max_depth: int) -> JSONResponse:
    loc = ["body", *[p if p is not None else "?" for p in path[:max_depth]]]
    return unprocessable([{
        "type": "json_too_deep", "loc": loc,
        "msg": f"JSON nested deeper than {max_depth} arrays/objects at "
               f"{'.'.join(map(str, loc[1:])) or 'the top level'}",
        "input": None, "ctx": {"max_depth": max_depth}}])
