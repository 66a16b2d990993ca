"""Build a scenario (exchange format v1) from real data files described by a TOML configuration.

:func:`build_scenario` reads a configuration such as ``examples/letter-regions.toml`` and turns the
public data sets of ``../shared/data`` (through the adapters of :mod:`greensched.data`) into a
validated :class:`~greensched.scenario.Scenario`; :func:`build_from_config` also saves it, reloads
it and checks that the reload is identical. Every field of the configuration is documented in
``docs/scenario-build.md``; this docstring states how each model input is derived.

Time axis
    Hour slot ``t`` is the UTC hour ``start + t h``; ``T = 24 × days`` (``days`` ≤ 366).

Hourly series (carbon, prices) and the date mapping
    A series read from a file is used *as measured* for every slot whose UTC hour it covers.
    For slots outside the file's period:

    * series spanning at least 52 weeks (Electricity Maps 2024, Let's-Wait-Awhile 2020): when
      the start lies outside the data, the whole horizon is moved into the data's year(s) by a
      whole number of weeks (``date_mapping = "same_weekday"``, default: the same weekday and UTC
      hour, within ±3 days of the same calendar date) or by whole days (``"same_date"``: the same
      calendar date; 29 February maps to 28 February of a common year); slots that then still
      fall after the data's end (or before its start) wrap back (forward) by 52 weeks;
    * shorter series (the two-day LMP files): the mean of the measured values at the same UTC
      hour of day.

    Holes that the adapter did not fill (runs longer than its gap limit) take the series' mean at
    the same UTC hour of day. The description of the built scenario says how many slots were
    measured, mapped or filled.

Energy and processing time per query (default: measured)
    From the Wilkins, Keshav & Mortier measurements (``energy_inference/``; arXiv 2407.04014)
    for one model and system (``[energy]``), inference runs after the warm-up run (iteration ≥ 1):
    the input-token sweep (fixed output length o*: the one measured with the most input lengths)
    and the output-token sweep (fixed input length i*, likewise) give median energy
    and runtime curves E_in(h), E_out(f), R_in(h), R_out(f), interpolated linearly in the token
    count (extrapolated linearly from the outer segments; E_out and R_out pass through the
    origin below the shortest measured output). A request with h input and f output tokens then
    costs E(h, f) = E_out(f) + E_in(h) − E_in(i*) (additive in the two sweeps; energy is CPU +
    GPU energy), and likewise runtime R(h, f). For a query type whose tokens come from a trace
    (``"trace"``) the per-token
    coefficients are means over the type's requests:
    τ_out = mean_r E_out(f_r) / f̄, τ_in = max(0, mean_r [E_in(h_r) − E_in(i*)]) / h̄, so that
    τ_in h̄ + τ_out f̄ is the mean measured energy of the type's requests (E is superlinear in f,
    so this differs from E(h̄, f̄)). The processing delay per token is
    v = mean_r R(h_r, f_r) / (h̄ + f̄), the same in every DC unless a DC sets
    ``delay_s_per_token``; the default resource ``gpu`` is GPU-seconds, used at
    v × (GPUs of the measured runs) per token.

Demand
    queries[t, i, k] = round(Q × pop_i / Σ pop × mix_k × p(local hour of area i at t) × w),
    Q = mean total queries per hour (``"trace"``: the traces' own arrival rate), mix_k = share of
    type k among the trace requests of the modelled types, p = hour-of-day profile with mean 1
    (``diurnal``: 1 + A cos(2π (hour − peak)/24), an assumed shape; ``trace``: the traces'
    hour-of-day counts, needs ≥ 24 h of trace), w = ``weekend_factor`` on local Saturdays and
    Sundays, else 1. Local time follows the area's ``tz`` (with daylight-saving time) or fixed
    ``utc_offset``.

Network
    rtt_s of (area, DC) = the measured mean ping RTT between their cities; ``same_city_rtt_s``
    when the cities coincide; otherwise the fallback ``a + b × great-circle km`` (``fit``: least
    squares over the measured pairs whose cities have coordinates in the config; ``model``:
    a = ``rtt_overhead_s``, b = 2 × ``route_factor`` / ``fiber_speed_km_per_s``).
    bandwidth = ``bandwidth_bps``, optionally limited to 8 × ``tcp_window_bytes`` / rtt (the
    bandwidth-delay-product limit of one TCP connection); token_size = ``token_size_bits``.

Delay limits
    Built scenarios use the per-query delay model (``[objective] delay_model = "per_query"``,
    ``docs/delay-model.md``): ``latency_limit_s`` is the per-query SLO Δ[i, k] = L (s) on the
    mean latency of each (area, type, hour); ``delay_limit_s`` gives Δ per area directly.  Every
    (area, type) must have a DC whose per-query latency (RTT + transmission + processing) meets
    it.

Sizing (``"auto"``)
    capacity[j, r] = ceil(capacity_headroom × peak_t Σ use / J); grid_cap_kw[j] =
    ceil(grid_headroom × PUE_j × peak IT kW / J); ``renewable_share`` s gives a peak on-site
    renewable power of s × PUE_j × peak IT kW / J. Solar profiles are clear-sky
    max(0, cos zenith) at the slot's midpoint (Cooper's declination, solar time from longitude,
    no equation of time, no weather).

Water budget
    ``water_budget_factor`` f gives Z = f × the water of an even split of every hour's IT energy
    over the DCs, Σ_t Σ_j IT_t / J × (WUE_j,t + EWIF_j,t × PUE_j).

All configuration errors raise :class:`~greensched.errors.ScenarioError` with ``file`` = the
configuration and ``column`` = the field path (``datacenter[2].pue``); numbers are indexed from 0.
"""


from greensched.builder.build import build_from_config, build_scenario
from greensched.builder.config import DEFAULT_DATA_DIR
from greensched.builder.sources import clear_cache

__all__ = ["DEFAULT_DATA_DIR", "build_from_config", "build_scenario", "clear_cache"]
