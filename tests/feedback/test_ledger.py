"""The durable capacity ledger (greensched.feedback.ledger) on SQLite and PostgreSQL: what is
committed survives re-opening, the conditional update refuses over-booking, job ids are unique,
releases and expiry give ticks back, and a ledger made for another scenario is refused."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from greensched.feedback.ledger import (
    CapacityConflict,
    DurableLedger,
    JobIdRace,
    LedgerError,
    Reservation,
    ledger_url,
)
from greensched.scheduler.assign import CapacityLedger

TPU = 1024  # ticks per unit: small numbers, easy to check by hand


def memory(cap_units: float = 10.0, hours: int = 3) -> CapacityLedger:
    """2 DCs × 2 resources, ``cap_units`` of each per hour."""
    return CapacityLedger(np.full((2, 2), cap_units), hours=hours, dcs=["dA", "dB"],
                          resources=["gpu", "mem"], ticks_per_unit=TPU)


def res(job: str, hour: int, dc: str | None, units: tuple[float, float] = (1.0, 0.5)
        ) -> Reservation:
    ticks = [int(u * TPU) for u in units] if dc is not None else None
    return Reservation(job, f"fp-{job}", hour, dc, ticks,
                       {"job_id": job, "dc": dc, "hour": hour})


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    server = request.getfixturevalue("pg_server")
    name, u = server.create_schema()
    request.addfinalizer(lambda: server.drop_schema(name))
    return u


def test_commit_survives_reopen_and_rebuilds_memory(url: str) -> None:
    led = DurableLedger.open(url, memory(), scenario="s")
    led.commit([res("a", 0, "dA"), res("b", 0, "dA"), res("c", 2, "dB", (3.0, 0.0)),
                res("u", 1, None)])
    led.close()
    again = DurableLedger.open(url, memory(), scenario="s")
    fresh = memory()
    again.load_into(fresh)
    expect = np.zeros((3, 2, 2), dtype=np.int64)
    expect[0, 0] = [2 * TPU, TPU]  # a + b
    expect[2, 1] = [3 * TPU, 0]
    np.testing.assert_array_equal(fresh.used_ticks, expect)
    np.testing.assert_array_equal(again.active_ticks(), expect)
    assert again.counts() == {"active": 3, "unplaced": 1}
    stored = again.lookup(["a", "u", "nope"])
    assert set(stored) == {"a", "u"}
    assert stored["a"] == ("fp-a", {"job_id": "a", "dc": "dA", "hour": 0})
    assert stored["u"][1]["dc"] is None
    again.close()


def test_conditional_update_refuses_overbooking_and_writes_nothing(url: str) -> None:
    led = DurableLedger.open(url, memory(cap_units=2.0), scenario="s")
    led.commit([res("a", 1, "dA")])  # gpu 1 of 2
    with pytest.raises(CapacityConflict) as info:
        led.commit([res("b", 1, "dA"), res("c", 1, "dA")])  # gpu 1 + 2 > 2
    assert info.value.hours == [1]
    assert set(led.lookup(["b", "c"])) == set()  # the batch's job rows were rolled back
    assert led.used_ticks()[1, 0].tolist() == [TPU, TPU // 2]
    led.commit([res("b", 1, "dA")])  # exactly full: allowed
    assert led.used_ticks()[1, 0, 0] == 2 * TPU
    led.close()


def test_job_id_is_unique(url: str) -> None:
    led = DurableLedger.open(url, memory(), scenario="s")
    led.commit([res("a", 0, "dA")])
    with pytest.raises(JobIdRace):
        led.commit([res("z", 0, "dB"), res("a", 0, "dB")])
    assert "z" not in led.lookup(["z"])
    assert led.used_ticks()[0, 1].sum() == 0
    led.close()


def test_release_and_expiry_give_ticks_back(url: str) -> None:
    led = DurableLedger.open(url, memory(), scenario="s")
    led.commit([res("a", 0, "dA"), res("b", 1, "dB"), res("c", 2, "dA")])
    ended = led.release(["a", "a", "unknown"])
    assert [(h, d, t.tolist()) for h, d, t in ended] == [(0, 0, [TPU, TPU // 2])]
    assert led.release(["a"]) == []  # already released
    assert [(h, d) for h, d, _ in led.expire_before(2)] == [(1, 1)]
    used = led.used_ticks()
    assert used[:2].sum() == 0 and used[2, 0].tolist() == [TPU, TPU // 2]
    assert led.counts() == {"released": 1, "expired": 1, "active": 1}
    assert set(led.lookup(["a", "b"])) == {"a", "b"}  # answers stay for re-sent jobs
    led.close()


def test_a_ledger_of_another_scenario_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'l.sqlite'}"
    DurableLedger.open(url, memory(), scenario="s").close()
    with pytest.raises(LedgerError, match="scenario"):
        DurableLedger.open(url, memory(), scenario="other")
    with pytest.raises(LedgerError, match="hours"):
        DurableLedger.open(url, memory(hours=4), scenario="s")
    led = DurableLedger.open(url, memory(), scenario="s")
    led.commit([res("a", 0, "dA")])
    led.close()
    with pytest.raises(LedgerError, match="capacity"):
        DurableLedger.open(url, memory(cap_units=5.0), scenario="s")
    with pytest.raises(LedgerError, match="in-memory"):
        ledger_url("sqlite:///:memory:")
    with pytest.raises(LedgerError, match="unsupported"):
        ledger_url("mysql://x/y")


def test_concurrent_writers_never_exceed_capacity(url: str) -> None:
    """8 threads, each with its own connection pool, race for 5 units of one (hour, dc)."""
    opened = [DurableLedger.open(url, memory(cap_units=5.0), scenario="s") for _ in range(8)]
    won: list[str] = []
    lock = threading.Lock()

    def run(w: int) -> None:
        for i in range(6):
            try:
                opened[w].commit([res(f"w{w}-{i}", 0, "dA", (1.0, 0.0))])
            except CapacityConflict:
                continue
            with lock:
                won.append(f"w{w}-{i}")

    threads = [threading.Thread(target=run, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 5
    assert opened[0].used_ticks()[0, 0, 0] == 5 * TPU
    assert sorted(opened[0].placed_jobs()) == sorted(won)
    for led in opened:
        led.close()
