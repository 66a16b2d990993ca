"""Runs README tour steps in one fresh process, in order (used by tests/test_readme_tour.py).

``python tests/readme_tour_driver.py STEPS.json`` in the working directory of the tour. Each step
is ``{"argv": [...], "serve": bool}``; a CLI step runs through the console-script entry point
``greensched.cli.main.main`` (as the ``greensched`` command does), a serve step starts
``greensched serve`` as its own process on a free loopback port, waits for ``/healthz``, places
one job with ``POST /v1/assign`` and stops it.  One JSON line per step goes to stdout.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any


def _cli(argv: list[str]) -> tuple[int, str]:
    from greensched.cli.main import main

    sys.argv = ["greensched", *argv]
    err = io.StringIO()
    code = 0
    with contextlib.redirect_stderr(err):
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return code, err.getvalue()[-2000:]


def _serve(argv: list[str]) -> tuple[int, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    key = "tour-key-0123456789abcdef"
    env = {**os.environ, "GREENSCHED_API_KEY": key}
    code = "import sys; from greensched.cli.main import main; sys.argv[0] = 'greensched'; main()"
    proc = subprocess.Popen([sys.executable, "-c", code, *argv, "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        t0 = time.monotonic()
        while True:
            try:
                with urllib.request.urlopen(base + "/healthz", timeout=5) as r:
                    health = json.loads(r.read())
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() - t0 > 120:
                    return 1, (proc.stderr.read() if proc.stderr else "")[-2000:]
                time.sleep(0.2)
        job = json.loads(Path("serve_job.json").read_text())
        req = urllib.request.Request(base + "/v1/assign", data=json.dumps(job).encode(),
                                     method="POST", headers={"X-API-Key": key,
                                                             "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            answer = json.loads(r.read())
        ok = answer.get("dc") is not None and health.get("status") == "ok"
        return (0 if ok else 1), json.dumps({"health": health, "answer": answer})
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> int:
    steps: list[dict[str, Any]] = json.loads(Path(sys.argv[1]).read_text())
    for step in steps:
        t0 = time.perf_counter()
        code, err = (_serve if step.get("serve") else _cli)(list(step["argv"]))
        out = {"argv": step["argv"], "code": code, "seconds": time.perf_counter() - t0,
               "stderr": err}
        sys.__stdout__.write(json.dumps(out) + "\n")  # type: ignore[union-attr]
        sys.__stdout__.flush()  # type: ignore[union-attr]
    return 0


if __name__ == "__main__":
    sys.exit(main())
