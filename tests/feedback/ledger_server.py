"""Kill-test helper: one GreenSched service on 127.0.0.1 with a durable ledger.

Usage: ``python ledger_server.py PORT LEDGER_URL STORE_PATH WORKDIR CAPACITY_DIVISOR``.

Serves the synthetic scenario of :func:`scenario` (capacity divided by ``CAPACITY_DIVISOR``)
with its own per-query coefficients, API key :data:`KEY`; prints ``ready`` once listening.
"""

from __future__ import annotations

import sys
from pathlib import Path

from greensched.scenario import Scenario

KEY = "ledger-test-key-0123456789"


def scenario(divisor: float) -> Scenario:
    """4 DCs, 3 areas, 3 types, 6 hours, capacity / ``divisor``."""
    import numpy as np

    from greensched.synth import synthesize

    s = synthesize(dcs=4, areas=3, types=3, hours=6, seed=3, name="ledger-test")
    s.ds["capacity"] = np.floor(s.ds["capacity"] / divisor)
    return s


def main(argv: list[str]) -> int:
    import threading

    import uvicorn
    import xarray as xr

    from greensched.scenario import save_coefficients
    from greensched.service import ServiceConfig, create_app
    from greensched.service.serve import timed_protocol

    port, ledger, store, workdir, divisor = (int(argv[0]), argv[1], argv[2], Path(argv[3]),
                                             float(argv[4]))
    scen = scenario(divisor)
    coef = workdir / "coefficients.csv"
    if not coef.is_file():
        save_coefficients(xr.Dataset({"energy_kwh_per_query": scen.energy_kwh_per_query(),
                                      "proc_delay_s_per_query": scen.proc_delay_s_per_query()}),
                          coef)
    app = create_app(ServiceConfig(scenario=scen, coefficients=coef, api_key=KEY,
                                   ledger=ledger, store=store or None))
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            access_log=False, http=timed_protocol(10.0, 1000))
    server = uvicorn.Server(config)

    def announce() -> None:
        import time

        while not server.started:
            time.sleep(0.02)
        print("ready", flush=True)

    threading.Thread(target=announce, daemon=True).start()
    server.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
