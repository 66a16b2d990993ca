"""Scenario-builder benchmark: a full-year build against just reading its raw files.

Run on demand:  python bench/bench_builder.py [--days 366] [--start 2024-01-01] [--repeat 3]

Reports medians (seconds) of
* the adapters alone: every distinct data file the configuration names, read once with the
  ``greensched.data`` adapters (Electricity Maps, LMP, pings, Azure traces, energy measurements);
* a cold build (adapter cache cleared first) and a warm build (files already cached);
* build + save + reload + identity check (``build_from_config``), cold;
and the ratio cold build / adapters, all measured in this run. Target: a 366-day build of the
nine-region example in <= 10 s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import greensched.builder as builder
from greensched.data.azure_trace import read_azure_trace
from greensched.data.electricity_maps import read_electricity_maps
from greensched.data.energy_inference import read_energy_inference
from greensched.data.lets_wait_awhile import read_lets_wait_awhile
from greensched.data.lmp import read_lmp
from greensched.data.network_delay import read_rtt_matrix

REPO = Path(__file__).resolve().parents[1]


def read_raw_files(config: Path, data_dir: Path) -> float:
    """Seconds to read every distinct data file of ``config`` once with the adapters (no cache)."""
    doc = tomllib.loads(config.read_text(encoding="utf-8"))
    basis = doc["scenario"].get("carbon_basis", "direct")
    carbon = {(dc["carbon_file"], dc.get("carbon_tz", "UTC"))
              for dc in doc.get("datacenter", []) if dc.get("carbon_file")}
    prices = {dc["price_file"] for dc in doc.get("datacenter", []) if dc.get("price_file")}
    net = doc.get("network", {})
    t0 = time.perf_counter()
    for rel, tz in sorted(carbon):
        if "lets_wait_awhile" in rel:
            read_lets_wait_awhile(data_dir / rel, tz=tz)
        else:
            read_electricity_maps(data_dir / rel, basis)
    for rel in sorted(prices):
        read_lmp(data_dir / rel)
    if net.get("ping_dir"):
        read_rtt_matrix(data_dir / net["ping_dir"])
    for trace in doc.get("demand", {}).get("trace_files", []):
        read_azure_trace(data_dir / trace)
    read_energy_inference(data_dir / doc.get("energy", {}).get("data", "energy_inference"))
    return time.perf_counter() - t0


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=REPO / "examples" / "letter-regions.toml")
    ap.add_argument("--days", type=int, default=366)
    ap.add_argument("--start", default="2024-01-01")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    args = ap.parse_args()
    if not args.data_dir.is_dir():
        print(f"data directory {args.data_dir} not found", file=sys.stderr)
        return 2
    kw = {"days": args.days, "start": args.start, "data_dir": args.data_dir}

    builder.build_scenario(args.config, **kw)  # warm imports
    raw = statistics.median(read_raw_files(args.config, args.data_dir) for _ in range(args.repeat))

    def cold() -> None:
        builder.clear_cache()
        builder.build_scenario(args.config, **kw)

    cold_s = statistics.median(timed(cold) for _ in range(args.repeat))
    warm_s = statistics.median(
        timed(lambda: builder.build_scenario(args.config, **kw)) for _ in range(args.repeat)
    )
    with tempfile.TemporaryDirectory() as tmp:

        def full() -> None:
            builder.clear_cache()
            builder.build_from_config(args.config, Path(tmp) / "s", **kw)

        full_s = statistics.median(timed(full) for _ in range(args.repeat))
    scen = builder.build_scenario(args.config, **kw)
    print(f"{args.config.name}: {args.days} days from {args.start}; sizes {scen.sizes()}")
    print(f"  adapters only (raw files)            {raw:7.2f} s")
    print(f"  build, cold (cache cleared)          {cold_s:7.2f} s   ratio {cold_s / raw:5.2f}")
    print(f"  build, warm (files cached)           {warm_s:7.2f} s")
    print(f"  build + save + reload + check, cold  {full_s:7.2f} s")
    print(f"  target <= 10 s for the build: {'met' if cold_s <= 10 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
