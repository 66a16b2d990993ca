"""Load test of the HTTP service on loopback, run on demand (not a test).

    python bench/bench_service.py [--requests 20000] [--concurrency 50] [--rate 200]
                                  [--model MODEL_DIR | --dataset DS.parquet | --coefficients]
                                  [--scenario DIR] [--window-ms 2] [--jobs-per-request 1]
                                  [--capacity-scale 1.0] [--reference 2000] [--json OUT.json]
                                  [--keep]

What it does:

1. builds a scenario (``--scenario`` or a synthetic one: 10 DCs, 5 areas, 4 types, 24 hours) and
   a predictor: ``--model`` as given, or XGBoost trained on ``--dataset`` (a twin dataset from
   ``greensched simulate ... --dataset``) or, by default, on the synthetic stand-in dataset;
   ``--coefficients`` serves the scenario's own per-query coefficients instead;
2. starts ``greensched.service.serve_command`` in a **separate process** on 127.0.0.1 with a
   random API key (so the load generator does not share the server's interpreter lock);
3. sends ``--reference`` ``GET /healthz`` requests, then ``--requests`` ``POST /v1/assign``
   requests, open loop: request i is due at ``i / rate`` seconds, at most ``--concurrency`` are
   in flight over persistent keep-alive connections (a minimal HTTP/1.1 client on asyncio
   streams: a full client library would cost more CPU than the server on two cores), and
   stops by itself;
4. reports: statuses (the zero-5xx check), throughput, latency p50/p90/p99/max measured from
   the moment each request was sent (and from when it was due, which includes waiting for a
   free connection), the p50 ratio to the same run's ``/healthz`` p50, the mean micro-batch size
   (``/metrics``), and the capacity check: ``GET /v1/ledger`` used ticks per (hour, dc, resource)
   must equal the sum of the accepted jobs' usage ticks computed here from the scenario.

``--ledgers memory,sqlite`` measures the in-memory and a fresh durable SQLite ledger in the
same run, one after the other.  Beside each latency it reports what the machine was doing: the
load average before and after the load phase, and the server's and the client's CPU time per
request (on a shared machine the CPU per request moves far less than the latency does).

Targets: zero 5xx and ledger == sum always; p99 <= 50 ms at 500 single-job requests/s with
XGBoost predictions, for the in-memory and the durable SQLite ledger (issue 17):

    python bench/bench_service.py --rate 500 --requests 30000 --concurrency 50 \
        --ledgers memory,sqlite --model M --json out.json

(``M``: a saved XGBoost predictor; without ``--model`` one is trained here on the synthetic
stand-in dataset, ``--train-rows`` rows, about 1 to 4 minutes on two cores.)
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from greensched.scenario import Scenario, load_scenario, save_coefficients
from greensched.scheduler.assign import CapacityLedger
from greensched.service.serve import http_implementation
from greensched.synth import synthesize

HOST = "127.0.0.1"


# -- a minimal keep-alive HTTP/1.1 client -------------------------------------------------------


class Connection:
    """One persistent HTTP/1.1 connection (Content-Length bodies only, as the service sends)."""

    def __init__(self, port: int, key: str) -> None:
        self.port = port
        self.key = key.encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(HOST, self.port)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass

    async def request(self, method: str, path: str, body: bytes | None = None
                      ) -> tuple[int, bytes]:
        if self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        head = [f"{method} {path} HTTP/1.1", f"host: {HOST}:{self.port}",
                "x-api-key: " + self.key.decode()]
        if body is not None:
            head += ["content-type: application/json", f"content-length: {len(body)}"]
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + (body or b""))
        await self.writer.drain()
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("server closed the connection")
        status = int(status_line.split()[1])
        length = 0
        close = False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value.strip())
            elif name == "connection" and value.strip().lower() == "close":
                close = True
        data = await self.reader.readexactly(length) if length else b""
        if close:
            await self.close()
            self.writer = None
        return status, data


# -- the workload ---------------------------------------------------------------------------------


def make_jobs(scen: Scenario, n: int, seed: int) -> list[dict[str, Any]]:
    """Random jobs: uniform area, type and arrival; log-normal tokens around the type's means."""
    rng = np.random.default_rng(seed)
    ds = scen.ds
    k = rng.integers(0, len(scen.query_types), n)
    a = rng.integers(0, len(scen.areas), n)
    h_mean = ds["input_tokens"].values[k]
    f_mean = ds["output_tokens"].values[k]
    inp = np.maximum(1, np.round(h_mean * rng.lognormal(0, 0.5, n))).astype(int)
    out = np.maximum(1, np.round(f_mean * rng.lognormal(0, 0.5, n))).astype(int)
    arrival = rng.uniform(0, scen.hours * 3600.0 - 1e-3, n)
    known = rng.random(n) < 0.7
    jobs = []
    for i in range(n):
        j: dict[str, Any] = {"job_id": f"bench-{i:07d}", "area": scen.areas[a[i]],
                             "query_type": scen.query_types[k[i]],
                             "input_tokens": int(inp[i]), "arrival_s": float(arrival[i]),
                             "sla_s": 30.0}
        if known[i]:
            j["output_tokens"] = int(out[i])
        jobs.append(j)
    return jobs


def expected_ticks(scen: Scenario, jobs: list[dict[str, Any]],
                   results: list[dict[str, Any] | None]) -> np.ndarray:
    """Σ usage ticks of the accepted jobs per (hour, dc, resource)."""
    ledger = CapacityLedger.from_scenario(scen)
    upt = scen.ds["units_per_token"].transpose("query_type", "resource").values
    mean_out = scen.ds["output_tokens"].values
    k_pos = {k: i for i, k in enumerate(scen.query_types)}
    d_pos = {d: i for i, d in enumerate(scen.dcs)}
    total = np.zeros_like(ledger.used_ticks)
    for j, r in zip(jobs, results, strict=True):
        if r is None or r.get("dc") is None:
            continue
        k = k_pos[j["query_type"]]
        tokens = j["input_tokens"] + j.get("output_tokens", mean_out[k])
        total[r["hour"], d_pos[r["dc"]]] += ledger.to_ticks(upt[k] * tokens)
    return total


async def run_load(port: int, key: str, bodies: list[bytes], path: str, method: str,
                   rate: float, concurrency: int) -> dict[str, Any]:
    """Open-loop load: request i due at i/rate; ``concurrency`` connections."""
    n = len(bodies)
    sent_lat = np.full(n, np.nan)
    due_lat = np.full(n, np.nan)
    status = np.zeros(n, dtype=np.int64)
    payloads: list[bytes | None] = [None] * n
    next_i = 0
    t0 = time.perf_counter() + 0.05

    async def worker() -> None:
        nonlocal next_i
        conn = Connection(port, key)
        try:
            while True:
                i = next_i
                if i >= n:
                    return
                next_i += 1
                due = t0 + i / rate if rate > 0 else time.perf_counter()
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                start = time.perf_counter()
                try:
                    st, data = await conn.request(method, path,
                                                  bodies[i] if method == "POST" else None)
                except (ConnectionError, asyncio.IncompleteReadError, OSError):
                    st, data = 599, b""  # the server went away (or was killed)
                    await conn.close()
                    conn = Connection(port, key)  # opened on the next request
                end = time.perf_counter()
                sent_lat[i], due_lat[i], status[i] = end - start, end - due, st
                payloads[i] = data
        finally:
            await conn.close()

    begin = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - begin
    return {"latency_s": sent_lat, "due_latency_s": due_lat, "status": status,
            "payloads": payloads, "wall_s": wall}


def percentiles(x: np.ndarray) -> dict[str, float]:
    x = x[np.isfinite(x)]
    return {f"p{q}": float(np.percentile(x, q) * 1e3) for q in (50, 90, 99)} | {
        "max": float(x.max() * 1e3), "mean": float(x.mean() * 1e3)}


# -- set-up ---------------------------------------------------------------------------------------


def build_model(scen: Scenario, work: Path, dataset: Path | None, rows: int) -> Path:
    """Train an XGBoost predictor (dataset given, or the synthetic stand-in) and save it."""
    from greensched.predictor.xgb import XGBoostPredictor

    if dataset is not None:
        from greensched.predictor.dataset import read_dataset

        df = read_dataset(dataset)
    else:
        from greensched.predictor.synthetic import synthetic_dataset

        df, _ = synthetic_dataset(scen, rows, seed=1, noise=0.05)
    t0 = time.perf_counter()
    model = XGBoostPredictor(n_estimators=300, action_n_estimators=100, n_jobs=2).fit(df)
    print(f"trained XGBoost on {len(df)} rows in {time.perf_counter() - t0:.1f} s", flush=True)
    return model.save(work / "model")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def start_server(scen_dir: Path, source: dict[str, str], port: int, key: str,
                 window_ms: float, log: Path) -> subprocess.Popen[bytes]:
    args = {"scenario": str(scen_dir), "host": HOST, "port": port,
            "batch_window_s": window_ms / 1e3, "log_level": "warning", "access_log": False,
            **source}
    code = ("import json, sys\nfrom pathlib import Path\n"
            "from greensched.service import serve_command\n"
            "a = json.loads(sys.argv[1])\n"
            "for k in ('scenario', 'model', 'coefficients'):\n"
            "    if a.get(k): a[k] = Path(a[k])\n"
            "serve_command(**a)\n")
    env = {**os.environ, "GREENSCHED_API_KEY": key, "OMP_WAIT_POLICY": "PASSIVE"}
    fh = log.open("wb")
    return subprocess.Popen([sys.executable, "-c", code, json.dumps(args)], env=env,
                            stdout=fh, stderr=subprocess.STDOUT)


async def wait_ready(port: int, key: str, proc: subprocess.Popen[bytes],
                     timeout_s: float = 120.0) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode}")
        try:
            conn = Connection(port, key)
            st, _ = await conn.request("GET", "/healthz")
            await conn.close()
            if st == 200:
                return
        except OSError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("the server did not become ready")


async def fetch(port: int, key: str, path: str) -> tuple[int, bytes]:
    conn = Connection(port, key)
    try:
        return await conn.request("GET", path)
    finally:
        await conn.close()


def cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux ``/proc``; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages (the machine is shared: read timings beside them)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return float("nan")


# -- main -----------------------------------------------------------------------------------------


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="greensched-bench-service-"))
    try:
        return await _bench(args, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


async def _bench(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    if args.scenario:
        scen = load_scenario(args.scenario)
    else:
        scen = synthesize(dcs=10, areas=5, types=4, hours=24, seed=0, name="bench-service")
    if args.capacity_scale != 1.0:
        scen = scen.copy()
        scen.ds["capacity"] = scen.ds["capacity"] * args.capacity_scale
    scen_dir = scen.save(work / "scenario")
    scen = load_scenario(scen_dir)
    if args.coefficients:
        import xarray as xr

        coef = xr.Dataset({"energy_kwh_per_query": scen.energy_kwh_per_query(),
                           "proc_delay_s_per_query": scen.proc_delay_s_per_query()})
        source = {"coefficients": str(save_coefficients(coef, work / "coefficients.csv"))}
        kind = "coefficients"
    else:
        model = Path(args.model) if args.model else build_model(scen, work, args.dataset,
                                                                args.train_rows)
        source = {"model": str(model)}
        kind = "xgboost"
    if args.kill_rounds:
        return await kill_rounds(args, work, scen, scen_dir, source)
    reports = {}
    for ledger in args.ledgers.split(","):
        ledger = ledger.strip()
        url = None if ledger == "memory" else (
            f"sqlite:///{work / 'ledger.sqlite'}" if ledger == "sqlite" else ledger)
        if url is not None and url.startswith("sqlite:///"):
            for suffix in ("", "-wal", "-shm"):
                Path(url[len("sqlite:///"):] + suffix).unlink(missing_ok=True)
        print(f"== ledger: {ledger}", flush=True)
        reports[ledger] = await _run_one(args, work, scen, scen_dir, source, kind, url)
        print(json.dumps({k: v for k, v in reports[ledger].items()
                          if k in ("statuses", "achieved_rate_per_s", "latency_ms",
                                   "ledger_equals_sum_of_accepted", "load_average_before",
                                   "server_cpu_ms_per_request")}), flush=True)
    return {"ledgers": reports}


async def _run_one(args: argparse.Namespace, work: Path, scen: Scenario, scen_dir: Path,
                   source: dict[str, str], kind: str, ledger: str | None) -> dict[str, Any]:
    key = secrets.token_urlsafe(24)
    port = free_port()
    log = work / f"server-{port}.log"
    proc = start_server(scen_dir, {**source, **({"ledger": ledger} if ledger else {})}, port,
                        key, args.window_ms, log)
    try:
        await wait_ready(port, key, proc)
        per = args.jobs_per_request
        jobs = make_jobs(scen, args.requests * per, seed=args.seed)
        if per == 1:
            bodies = [json.dumps(j).encode() for j in jobs]
        else:
            bodies = [json.dumps({"jobs": jobs[i:i + per]}).encode()
                      for i in range(0, len(jobs), per)]
        # warm-up (not measured): a few hundred single-job requests with other job ids
        warm_jobs = [{**j, "job_id": "warm-" + j["job_id"]}
                     for j in make_jobs(scen, 300, seed=args.seed + 1)]
        warm = await run_load(port, key, [json.dumps(j).encode() for j in warm_jobs],
                              "/v1/assign", "POST", args.rate, args.concurrency)
        ref = await run_load(port, key, [b""] * args.reference, "/healthz", "GET", args.rate,
                             args.concurrency)
        print(f"reference: {args.reference} GET /healthz done; load: {len(bodies)} requests "
              f"at {args.rate:g}/s, {args.concurrency} concurrent ...", flush=True)
        load_before, client_cpu0 = load_average(), time.process_time()
        server_cpu0 = cpu_s(proc.pid)
        res = await run_load(port, key, bodies, "/v1/assign", "POST", args.rate,
                             args.concurrency)
        server_cpu = cpu_s(proc.pid) - server_cpu0
        client_cpu = time.process_time() - client_cpu0
        load_after = load_average()
        st_ledger, raw_ledger = await fetch(port, key, "/v1/ledger")
        _, raw_metrics = await fetch(port, key, "/metrics")
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    status = res["status"]
    results: list[dict[str, Any] | None] = []
    for st, data in zip(status, res["payloads"], strict=True):
        if st != 200:
            results.extend([None] * per)
            continue
        body = json.loads(data)
        results.extend(body["assignments"] if per > 1 else [body])
    warm_results = [json.loads(d) if st == 200 else None
                    for st, d in zip(warm["status"], warm["payloads"], strict=True)]
    ledger_body = json.loads(raw_ledger) if st_ledger == 200 else {}
    used = np.asarray(ledger_body.get("used_ticks", []), dtype=np.int64)
    expected = expected_ticks(scen, jobs + warm_jobs, results + warm_results)
    ledger_ok = used.shape == expected.shape and bool(np.array_equal(used, expected))
    metrics_text = raw_metrics.decode()
    batch_mean = metric(metrics_text, "greensched_prediction_batch_jobs_sum") / metric(
        metrics_text, "greensched_prediction_batch_jobs_count")
    def mean_ms(name: str) -> float:
        return 1e3 * metric(metrics_text, name + "_sum") / metric(metrics_text, name + "_count")

    lat = percentiles(res["latency_s"])
    due = percentiles(res["due_latency_s"])
    ref_lat = percentiles(ref["latency_s"])
    n5 = int((status >= 500).sum())
    placed = sum(1 for r in results if r is not None and r.get("dc") is not None)
    report = {
        "ledger": ledger or "memory",
        "predictions": kind,
        "scenario": scen.name,
        "dcs": len(scen.dcs),
        "requests": len(bodies),
        "jobs_per_request": per,
        "concurrency": args.concurrency,
        "target_rate_per_s": args.rate,
        "achieved_rate_per_s": len(bodies) / res["wall_s"],
        "wall_s": res["wall_s"],
        "statuses": {str(k): int(v) for k, v in zip(*np.unique(status, return_counts=True),
                                                     strict=True)},
        "zero_5xx": n5 == 0,
        "latency_ms": lat,
        "latency_from_due_ms": due,
        "healthz_latency_ms": ref_lat,
        "p50_ratio_to_healthz_p50": lat["p50"] / ref_lat["p50"],
        "p99_target_50ms_met": lat["p99"] <= 50.0,
        "server_http": http_implementation(),
        "server_loop": "uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        "load_average_before": load_before,
        "load_average_after": load_after,
        "server_cpu_ms_per_request": 1e3 * server_cpu / len(bodies),
        "server_cpu_share_of_one_core": server_cpu / res["wall_s"],
        "client_cpu_ms_per_request": 1e3 * client_cpu / len(bodies),
        "mean_prediction_batch_jobs": batch_mean,
        "mean_prediction_call_ms": mean_ms("greensched_prediction_duration_seconds"),
        "mean_assignment_call_ms": mean_ms("greensched_assignment_duration_seconds"),
        "jobs_placed": placed,
        "jobs_unplaced": len(results) - placed,
        "ledger_equals_sum_of_accepted": ledger_ok,
        "ledger_ticks_total": int(used.sum()) if used.size else None,
        "accepted_ticks_total": int(expected.sum()),
        "server_log": str(log) if args.keep else None,
    }
    return report


def _outcome(job: dict[str, Any], a: dict[str, Any]) -> bytes:
    return json.dumps({**job, "dc": a["dc"], "model_version": a["model_version"],
                       "pred_energy_kwh": a["predicted_energy_kwh"],
                       "pred_service_s": a["predicted_service_s"],
                       "energy_kwh": a["predicted_energy_kwh"] * 1.05,
                       "service_s": a["predicted_service_s"] * 0.95}).encode()


async def kill_rounds(args: argparse.Namespace, work: Path, scen: Scenario, scen_dir: Path,
                      source: dict[str, str]) -> dict[str, Any]:
    """kill -9 under load: each round sends ``--requests`` jobs (and outcomes of earlier
    rounds' placed jobs) at ``--rate``, SIGKILLs the server at a random moment, restarts it,
    re-sends what was not acknowledged, then checks that no job id was placed twice (every job
    re-sent gets its acknowledged answer, the ledger does not move), that the ledger equals the
    acknowledged reservations exactly, and that every acknowledged outcome is stored."""
    from greensched.feedback.store import OutcomeStore

    key, port = secrets.token_urlsafe(24), free_port()
    ledger = f"sqlite:///{work / 'ledger.sqlite'}"
    store = str(work / "outcomes.sqlite")
    src = {**source, "ledger": ledger, "store": store}
    rng = np.random.default_rng(args.seed)
    jobs: dict[str, dict[str, Any]] = {}
    answers: dict[str, dict[str, Any]] = {}
    stored: set[str] = set()
    rounds = []

    async def start() -> subprocess.Popen[bytes]:
        proc = start_server(scen_dir, src, port, key, args.window_ms, work / "server.log")
        await wait_ready(port, key, proc)
        return proc

    def take(res: dict[str, Any], ids: list[str], outcome: bool) -> int:
        n = 0
        for jid, st, data in zip(ids, res["status"], res["payloads"], strict=True):
            if st == 200:
                n += 1
                if outcome:
                    stored.add(jid)
                else:
                    answers[jid] = json.loads(data)
            elif st != 599:
                raise AssertionError(f"status {st} for {jid}: {data[:200]!r}")
        return n

    proc = await start()
    try:
        for r in range(args.kill_rounds):
            batch = [{**j, "job_id": f"k{r:02d}-{j['job_id']}"}
                     for j in make_jobs(scen, args.requests, seed=args.seed + 100 + r)]
            jobs.update({j["job_id"]: j for j in batch})
            out_ids = [jid for jid, a in answers.items() if a["dc"] is not None
                       and jid not in stored and hash(jid) % 3 == 0]
            kill_after_s = float(rng.uniform(0.1, 0.9)) * args.requests / args.rate

            async def killer(p: subprocess.Popen[bytes] = proc, t: float = kill_after_s) -> None:
                await asyncio.sleep(t)
                p.kill()

            k = asyncio.create_task(killer())
            res_a, res_o = await asyncio.gather(
                run_load(port, key, [json.dumps(j).encode() for j in batch], "/v1/assign",
                         "POST", args.rate, args.concurrency),
                run_load(port, key, [_outcome(jobs[j], answers[j]) for j in out_ids],
                         "/v1/outcomes", "POST", args.rate / 4, 4))
            await k
            proc.wait()
            acked_a = take(res_a, [j["job_id"] for j in batch], False)
            acked_o = take(res_o, out_ids, True)
            before = dict(answers)
            proc = await start()
            # the client re-sends what was not acknowledged
            retry = [j for j in batch if j["job_id"] not in answers]
            take(await run_load(port, key, [json.dumps(j).encode() for j in retry],
                                "/v1/assign", "POST", 0, args.concurrency),
                 [j["job_id"] for j in retry], False)
            retry_o = [j for j in out_ids if j not in stored]
            take(await run_load(port, key, [_outcome(jobs[j], answers[j]) for j in retry_o],
                                "/v1/outcomes", "POST", 0, 4), retry_o, True)
            _, raw = await fetch(port, key, "/v1/ledger")
            used = np.asarray(json.loads(raw)["used_ticks"], dtype=np.int64)
            ids = list(jobs)
            open_ids = [j for j in ids if j not in stored]
            want = expected_ticks(scen, [jobs[j] for j in open_ids],
                                  [answers.get(j) for j in open_ids])
            resent = await run_load(port, key, [json.dumps({"jobs": [jobs[j] for j in
                                                                     ids[i:i + 1000]]}).encode()
                                                for i in range(0, len(ids), 1000)],
                                    "/v1/assign", "POST", 0, 2)
            same = all(st == 200 and json.loads(d)["assignments"] == [
                answers[j] for j in ids[i * 1000:(i + 1) * 1000]]
                for i, (st, d) in enumerate(zip(resent["status"], resent["payloads"],
                                                strict=True)))
            _, raw2 = await fetch(port, key, "/v1/ledger")
            still = np.array_equal(np.asarray(json.loads(raw2)["used_ticks"]), used)
            with OutcomeStore.open(store, create=False) as st_:
                in_store = set(st_.query()["job_id"])
            rounds.append({
                "round": r, "killed_after_s": round(kill_after_s, 3),
                "assign_acknowledged_before_kill": acked_a,
                "outcomes_acknowledged_before_kill": acked_o,
                "resent_after_restart": len(retry), "outcomes_resent": len(retry_o),
                "acknowledged_answers_unchanged": all(answers[j] == a for j, a in
                                                      before.items()),
                "no_job_placed_twice": same and still,
                "ledger_equals_acknowledged": bool(np.array_equal(used, want)),
                "no_acknowledged_outcome_missing": stored <= in_store,
            })
            print(json.dumps(rounds[-1]), flush=True)
    finally:
        proc.kill()
        proc.wait()
    checks = ("acknowledged_answers_unchanged", "no_job_placed_twice",
              "ledger_equals_acknowledged", "no_acknowledged_outcome_missing")
    return {"kill_rounds": rounds, "requests_per_round": args.requests,
            "jobs_placed": sum(a["dc"] is not None for a in answers.values()),
            "outcomes_stored": len(stored),
            "all_ok": all(all(r[c] for c in checks) for r in rounds)}


def summary(reports: dict[str, dict[str, Any]]) -> str:
    """A Markdown table of the latency runs (one row per ledger), for reports."""
    rows = ["| ledger | HTTP / loop | achieved | non-200 | p50 | p90 | p99 | p99 <= 50 ms | "
            "jobs per batch | predictor call | assignment call | server CPU per request | "
            "load average before / after | ledger = sum accepted |",
            "|" + "---|" * 14]
    for name, r in reports.items():
        lat = r["latency_ms"]
        bad = sum(v for k, v in r["statuses"].items() if k != "200")
        rows.append(
            f"| {name} | {r['server_http']} / {r['server_loop']} | "
            f"{r['achieved_rate_per_s']:.1f}/s | {bad} | {lat['p50']:.1f} ms | "
            f"{lat['p90']:.1f} ms | {lat['p99']:.1f} ms | "
            f"{'yes' if r['p99_target_50ms_met'] else 'no'} | "
            f"{r['mean_prediction_batch_jobs']:.1f} | {r['mean_prediction_call_ms']:.2f} ms | "
            f"{r['mean_assignment_call_ms']:.2f} ms | {r['server_cpu_ms_per_request']:.2f} ms | "
            f"{r['load_average_before'][:1]} / {r['load_average_after'][:1]} | "
            f"{'yes' if r['ledger_equals_sum_of_accepted'] else 'NO'} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--requests", type=int, default=20_000)
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--rate", type=float, default=200.0, help="target requests/s (0: closed "
                    "loop, as fast as the connections allow)")
    ap.add_argument("--jobs-per-request", type=int, default=1)
    ap.add_argument("--ledgers", default="memory,sqlite",
                    help="comma-separated ledgers to measure in this run: memory, sqlite (a "
                         "fresh durable SQLite ledger) or a postgresql:// URL")
    ap.add_argument("--window-ms", type=float, default=2.0, help="micro-batch window")
    ap.add_argument("--reference", type=int, default=2000, help="GET /healthz requests")
    ap.add_argument("--scenario", type=Path, default=None)
    ap.add_argument("--capacity-scale", type=float, default=1.0)
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--model", type=Path, default=None, help="saved predictor directory")
    src.add_argument("--dataset", type=Path, default=None, help="train XGBoost on this dataset")
    src.add_argument("--coefficients", action="store_true",
                     help="serve the scenario's coefficients instead of a model")
    ap.add_argument("--train-rows", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="also write the report here")
    ap.add_argument("--kill-rounds", type=int, default=0,
                    help="instead of the latency run: N rounds of --requests single-job "
                         "requests against a durable SQLite ledger, the server SIGKILLed at a "
                         "random point of each round and restarted (see kill_rounds)")
    ap.add_argument("--keep", action="store_true",
                    help="keep the work directory (scenario, model, server log)")
    args = ap.parse_args(argv)
    report = asyncio.run(bench(args))
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if "kill_rounds" in report:
        return 0 if report["all_ok"] else 1
    print(summary(report["ledgers"]))
    ok = all(r["zero_5xx"] and r["ledger_equals_sum_of_accepted"]
             for r in report["ledgers"].values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
