"""The README's command-line tour as a test: every command of it runs, in order, on small inputs.

:data:`TOUR` maps each command of the README's tour block (as written there, comment removed) to
the concrete command(s) run here: the same command and options on small inputs ({S}: a small
synthetic scenario, {PAPER}: the letter's scenario in ../shared/data).  A README command without
an entry fails :func:`test_every_readme_command_is_in_the_tour`, so the two stay in step.  The
commands run in README order in **one fresh process** (``tests/readme_tour_driver.py``) through
the console-script entry point ``greensched.cli.main.main``; ``greensched serve`` runs as its own
process, answers ``/healthz`` and one ``POST /v1/assign``.  Commands whose real work stays long
even on small inputs (builds from raw data, LoRA training, experiment suites) are marked heavy
and run in :func:`test_readme_tour_heavy_steps` (``-m slow``), still on small inputs.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SHARED = ROOT.parent / "shared" / "data"
PAPER = SHARED / "paper_scenario"
DRIFT = "--drift-dcs us-east1,us-east4,us-south1"

#: README command -> (concrete commands, heavy).
TOUR: dict[str, tuple[list[str], bool]] = {
    "greensched plan": (["plan"], False),
    "greensched plan ../shared/data/paper_scenario --out out/ --plot":
        ([f"plan {PAPER} --out out/ --plot"], False),
    "greensched plan SCENARIO --weights 0.6,0.2,0.2": (["plan {S} --weights 0.6,0.2,0.2"], False),
    "greensched plan SCENARIO --preset m1": (["plan {S} --preset m1"], False),
    "greensched plan SCENARIO --lexicographic carbon,delay,energy --epsilon 0.001":
        (["plan {S} --lexicographic carbon,delay,energy --epsilon 0.001"], False),
    "greensched plan SCENARIO --solver gurobi": (["plan {S} --solver gurobi"], False),
    "greensched plan SCENARIO --coefficients coefficients.csv":
        (["plan {S} --coefficients coefficients.csv"], False),
    "greensched plan SCENARIO --decompose hours --workers 2":
        (["plan {S} --decompose hours --workers 1"], False),
    "greensched plan SCENARIO --out out/ --tables parquet":
        (["plan {S} --out pq/ --tables parquet"], False),
    "greensched plan SCENARIO --rolling --horizon 24 --step 1 --days 3 --out roll/":
        (["plan {S} --rolling --horizon 2 --step 1 --out roll/"], False),
    "greensched plan SCENARIO --delay-model per_query": (["plan {S} --delay-model per_query"],
                                                         False),
    "greensched scenario build examples/letter-regions.toml --out day/ [--days 7] "
    "[--start 2024-07-01]": ([f"scenario build {ROOT}/examples/letter-regions.toml --out day/"],
                             True),
    "greensched scenario build examples/europe-lwa.toml --out eu/":
        ([f"scenario build {ROOT}/examples/europe-lwa.toml --out eu/"], True),
    "greensched scenario validate DIR": (["scenario validate {S}"], False),
    "greensched scenario show [DIR]": (["scenario show {S}"], False),
    "greensched scenario synth --dcs 50 --areas 50 --types 5 --hours 24 --seed 1 --out big/":
        (["scenario synth --dcs 4 --areas 3 --types 2 --hours 4 --seed 1 --out big/"], False),
    "greensched sweep SCENARIO --param theta --scale 0.1:1.9:0.2 --presets m0,m1,m2 --out sweep/":
        (["sweep {S} --param theta --scale 0.5:1.5:0.5 --presets m0,m1,m2 --out sweep/"], False),
    "greensched sweep SCENARIO --table lexicographic --out sweep/":
        (["sweep {S} --table lexicographic --out sweep/"], False),
    "greensched sweep SCENARIO --table weights --out sweep/":
        (["sweep {S} --table weights --out sweep/"], False),
    "greensched relocation --classes examples/relocation/classes-us.toml --out reloc-us":
        ([f"relocation --classes {ROOT}/examples/relocation/classes-us.toml --out reloc-us"],
         True),
    "greensched relocation examples/relocation/global.toml --classes "
    "examples/relocation/classes-global.toml --out reloc":
        ([f"relocation {ROOT}/examples/relocation/global.toml --classes "
          f"{ROOT}/examples/relocation/classes-global.toml --out reloc"], True),
    "greensched equity solve ten-locations --q 2 --hours 24 --out eq/ --plot":
        ([f"equity solve ten-locations --q 2 --hours 4 --data {SHARED} --out eq/ --plot"], True),
    "greensched equity online ten-locations --q inf --eta 1 --hours 72":
        ([f"equity online ten-locations --q inf --eta 1 --hours 4 --data {SHARED}"], True),
    "greensched plan SCENARIO --equity q=2,mu_c=1500,mu_w=60 --out out/":
        (["plan {S} --equity q=2,mu_c=1500,mu_w=60 --out eqplan/"], False),
    "greensched simulate SCENARIO --jobs 100000 --policy plan|greedy|nearest|random --out sim/":
        ([f"simulate {{S}} --jobs 300 --policy {p} --out sim/"
          for p in ("plan", "greedy", "nearest", "random")], False),
    "greensched simulate SCENARIO --trace ../shared/data/azure_llm_inference --policy greedy "
    "--out sim/": ([f"simulate {{S}} --trace {SHARED}/azure_llm_inference --policy greedy "
                    "--out simtrace/"], True),
    "greensched simulate SCENARIO --jobs 50000 --policy random --dataset train.parquet":
        (["simulate {S} --jobs 1500 --policy random --dataset train.parquet"], False),
    "greensched train --data train.parquet --model xgboost --out models/xgb":
        (["train --data train.parquet --model xgboost --out models/xgb"], False),
    "greensched train --data train.parquet --model lora --epochs 3 --out models/lora "
    "[--base-model PATH]": (["simulate {S} --jobs 200 --policy random --dataset lora.parquet",
                             "train --data lora.parquet --model lora --epochs 1 "
                             "--out models/lora"], True),
    "greensched train --data train.parquet --model lora --freeze-base --out models/frozen":
        (["simulate {S} --jobs 200 --policy random --dataset lora.parquet",
          "train --data lora.parquet --model lora --freeze-base --epochs 1 --out models/frozen"],
         True),
    "greensched evaluate-predictor --compare lora,lora-frozen,xgboost --data all.parquet "
    "--out reports/": (["simulate --jobs 300 --policy random --dataset all.parquet",
                        "evaluate-predictor --compare lora,lora-frozen,xgboost --data "
                        "all.parquet --out compare/"], True),
    "greensched evaluate-predictor --model models/xgb --data test.parquet --out report/":
        (["evaluate-predictor --model models/xgb --data test.parquet --out report/"], False),
    "greensched predict --model models/xgb --scenario SCENARIO --jobs jobs.csv --out pred.csv":
        (["predict --model models/xgb --scenario {S} --jobs jobs.csv --out pred.csv"], False),
    "greensched predict --model models/xgb --scenario SCENARIO --coefficients-out "
    "coefficients.csv": (["predict --model models/xgb --scenario {S} --coefficients-out "
                          "coefficients.csv"], False),
    "greensched assign --scenario S --jobs jobs.csv --model models/xgb --out assign.csv "
    "[--mode greedy|plan|follow|batch] [--plan out/] [--explore softmax]":
        (["assign --scenario {S} --jobs jobs.csv --model models/xgb --out assign.csv "
          "--mode greedy --explore softmax"]
         + [f"assign --scenario {{S}} --jobs jobs.csv --model models/xgb --out assign.csv "
            f"--mode {m} --plan splan/" for m in ("plan", "follow", "batch")], False),
    "GREENSCHED_API_KEY=... greensched serve --scenario S --model models/xgb --plan out/ "
    "--port 8080 [--ledger sqlite:///ledger.sqlite | --ledger postgresql://...]":
        (["serve --scenario {S} --model models/xgb --plan splan/ --ledger "
          "sqlite:///ledger.sqlite"], False),
    "greensched model register models/xgb --registry models/ --promote":
        (["model register models/xgb --registry models/ --promote"], False),
    "greensched model list --registry models/": (["model list --registry models/"], False),
    "greensched simulate SCENARIO --jobs 2000 --policy model --model models/ --out sim/":
        (["simulate {S} --jobs 400 --policy model --model models/ --out sim/"], False),
    "greensched feedback ingest sim/outcomes.csv --scenario SCENARIO":
        (["feedback ingest sim/outcomes.csv --scenario {S}"], False),
    "greensched feedback status --validation-metrics models/xgb/metrics.json":
        (["feedback status --validation-metrics models/xgb/metrics.json --min-samples 50"],
         False),
    "greensched feedback retune --registry models/ --replay train.parquet":
        (["feedback retune --registry models/ --replay train.parquet"], False),
    "greensched feedback run --registry models/ --replay train.parquet --interval 1h [--once]":
        (["feedback run --registry models/ --replay train.parquet --interval 1h --once "
          "--min-samples 50"], False),
    "greensched feedback experiment --out reports/":
        (["feedback experiment --quick --out reports/"], True),
    f"greensched loop --periods 36 --jobs 400 --drift-at 14 {DRIFT} --load-shift conv-long=3 "
    "--out reports/": ([f"loop --periods 2 --jobs 60 --train-jobs 300 --drift-at 1 {DRIFT} "
                        "--load-shift conv-long=3 --out loop/"], False),
    "greensched experiment run examples/experiments/main.toml --out out/main --workers 2 "
    "[--seeds N] [--ray local|ADDRESS] [--quick] [--report MD]":
        ([f"experiment run {ROOT}/examples/experiments/main.toml --out out/main --workers 1 "
          "--quick"], True),
    "greensched experiment report out/main [--out reports/evaluation.md]":
        (["experiment report out/main --out evaluation.md"], True),
}


def readme_commands() -> list[str]:
    """The commands of the README's tour block, continuation lines joined, comments removed."""
    text = README.read_text(encoding="utf-8")
    block = text.split("## A tour of the command line", 1)[1].split("```bash", 1)[1]
    block = block.split("```", 1)[0]
    cmds: list[str] = []
    pending = ""
    for raw in block.splitlines():
        line = raw.strip()
        if not line or (line.startswith("#") and not pending):
            continue
        line = re.sub(r"\s+#\s.*$", "", line)
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        cmds.append(" ".join((pending + line).split()))
        pending = ""
    return cmds


def test_every_readme_command_is_in_the_tour() -> None:
    cmds = readme_commands()
    assert len(cmds) >= 30
    missing = [c for c in cmds if c not in TOUR]
    assert not missing, f"README commands without a tour entry: {missing}"
    stale = [c for c in TOUR if c not in cmds]
    assert not stale, f"tour entries no longer in the README: {stale}"


def _setup(work: Path) -> Path:
    """The small inputs: scenario {S}, its plan, a jobs table, a test set, coefficients."""
    from greensched.eval.simulate import build_dataset, write_dataset
    from greensched.eval.traces import jobs_from_demand
    from greensched.scenario import save_coefficients
    from greensched.scheduler import plan
    from greensched.synth import synthesize

    scen = synthesize(dcs=3, areas=2, types=2, hours=4, seed=1)
    sdir = scen.save(work / "S")
    plan(scen).write(work / "splan")
    jobs_from_demand(scen, 80, seed=3).to_csv(work / "jobs.csv", index=False)
    write_dataset(build_dataset(scen, jobs_from_demand(scen, 300, seed=4), seed=4),
                  work / "test.parquet")
    import xarray as xr

    coef = xr.Dataset({"energy_kwh_per_query": scen.energy_kwh_per_query(),
                       "proc_delay_s_per_query": scen.proc_delay_s_per_query()})
    save_coefficients(coef.transpose("hour", "dc", "query_type"), work / "coefficients.csv")
    job = jobs_from_demand(scen, 1, seed=5).iloc[0]
    (work / "serve_job.json").write_text(json.dumps({
        "job_id": "tour-1", "area": str(job.area), "query_type": str(job.query_type),
        "input_tokens": int(job.input_tokens), "hour": int(job.hour)}))
    return sdir


def _steps(sdir: Path, heavy: bool) -> list[dict[str, object]]:
    steps = []
    for cmd in readme_commands():
        concrete, is_heavy = TOUR[cmd]
        if is_heavy != heavy:
            continue
        for c in concrete:
            argv = shlex.split(c.replace("{S}", str(sdir)))
            steps.append({"argv": argv, "serve": argv[0] == "serve", "readme": cmd})
    return steps


def _run_tour(tmp_path: Path, heavy: bool) -> list[dict[str, object]]:
    if not SHARED.is_dir():
        pytest.skip(f"reference data {SHARED} not found: the tour reads ../shared/data")
    sdir = _setup(tmp_path)
    steps = _steps(sdir, heavy)
    (tmp_path / "steps.json").write_text(json.dumps(steps))
    env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1",
           "GREENSCHED_STORE": str(tmp_path / "greensched-outcomes.sqlite")}
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "readme_tour_driver.py"),
                           str(tmp_path / "steps.json")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=1800)
    results = [json.loads(line) for line in proc.stdout.splitlines()
               if line.startswith('{"argv"')]
    (tmp_path / "results.jsonl").write_text(proc.stdout)
    assert len(results) == len(steps), proc.stderr[-3000:]
    failed = [(r["argv"], r["code"], r["stderr"]) for r in results
              if r["code"] != 0 and not (r["argv"][:2] == ["feedback", "status"]
                                         and r["code"] == 1)]
    assert not failed, failed
    return results


def test_readme_tour_runs_in_order(tmp_path: Path) -> None:
    pytest.importorskip("xgboost")
    pytest.importorskip("fastapi")
    results = _run_tour(tmp_path, heavy=False)
    assert (tmp_path / "sim" / "outcomes.csv").is_file()
    current = (tmp_path / "models" / "CURRENT").read_text().strip()
    assert current in {p.name for p in (tmp_path / "models" / "versions").iterdir()}
    assert (tmp_path / "loop" / "loop.md").is_file()
    serve = next(r for r in results if r["argv"][0] == "serve")  # type: ignore[index]
    assert json.loads(str(serve["stderr"]))["answer"]["dc"] is not None


@pytest.mark.slow
def test_readme_tour_heavy_steps(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    _run_tour(tmp_path, heavy=True)
