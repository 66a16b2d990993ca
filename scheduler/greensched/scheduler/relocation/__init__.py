"""greensched.scheduler.relocation: where inference may move, and whether moving pays.

The relocation framework of ``../shared/spec/equity-relocation.md`` (second half):

* :func:`load_classes` reads workload classes (latency budget, state size, allow-lists,
  capacity needs) from a TOML file beside a scenario;
* :func:`feasibility_masks` gives the mask F[workload, area, dc] (latency, law, capacity) as a
  labelled :class:`xarray.Dataset`; :func:`allow_lists` turns one class's mask into the
  assigner's ``sovereignty`` map and :func:`query_type_mask` into an (area, query_type, dc)
  mask for models indexed by query type, :func:`route_mask` into the equity model's
  (dc, region) ``route_mask``;
* :class:`PlacementModel` is the placement LP (energy + carbon cost + migration friction) over
  the masks, solved with HiGHS;
* :func:`frontier` sweeps a class's budget (exact at the mask's breakpoints) with its slopes
  EROL and CROL; :func:`metric_table` adds RID, layers and the break-even condition;
* :func:`analyse` runs everything and :meth:`RelocationReport.write` writes the tables/figures.

Service times are an input (the scenario's, or predicted ones): this package never imports the
predictor or the evaluation packages.
"""

from greensched.scheduler.relocation.analysis import RelocationReport, analyse
from greensched.scheduler.relocation.config import (
    EgressRule,
    RelocationConfig,
    RelocationError,
    WorkloadClass,
    load_classes,
)
from greensched.scheduler.relocation.frontier import budget_breakpoints, frontier, slopes
from greensched.scheduler.relocation.masks import (
    allow_lists,
    class_inputs,
    feasibility_masks,
    home_dcs,
    query_type_mask,
    route_mask,
)
from greensched.scheduler.relocation.metrics import (
    LAYERS,
    break_even,
    layers,
    metric_table,
    rid,
)
from greensched.scheduler.relocation.placement import (
    PlacementModel,
    PlacementResult,
    friction,
    unit_costs,
)

__all__ = [
    "LAYERS",
    "EgressRule",
    "PlacementModel",
    "PlacementResult",
    "RelocationConfig",
    "RelocationError",
    "RelocationReport",
    "WorkloadClass",
    "allow_lists",
    "analyse",
    "break_even",
    "budget_breakpoints",
    "class_inputs",
    "feasibility_masks",
    "friction",
    "frontier",
    "home_dcs",
    "layers",
    "load_classes",
    "metric_table",
    "query_type_mask",
    "rid",
    "route_mask",
    "slopes",
    "unit_costs",
]
