"""One look for every GreenSched figure: colour-blind-safe colours, paper sizes, time axes.

* **Colours**: the Okabe-Ito palette (M. Okabe and K. Ito, *Color Universal Design*, 2008;
  recommended for figures by B. Wong, *Nature Methods* 8:441, 2011), eight colours that stay
  distinguishable under the common colour-vision deficiencies, plus a ninth, grey.  Nine data
  centers therefore get nine different colours *and* nine different markers and line styles
  (:func:`series_style`), so that they stay apart in greyscale print too.
* **Sizes**: a journal column is 3.5 in (IEEE: 3.5 in; ACM/Elsevier single column ~3.3-3.5 in)
  and a page width 7.16 in (:data:`COLUMN_IN`, :data:`PAGE_IN`); fonts 8 pt.
* **Time axes** (:func:`time_axis`): hourly slots become timestamps of the scenario's start
  (UTC, or a named time zone), with the zone in the axis label.
* **Formats** (:func:`save_figure`): ``png`` (300 dpi), ``svg`` or ``pdf`` (vector), without
  the software/date metadata that would make files differ between runs.

matplotlib is imported only inside the functions (the Agg backend is selected when no display
backend was chosen), so importing this module is cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from greensched.errors import GreenSchedError

__all__ = [
    "COLUMN_IN",
    "MARKERS",
    "OKABE_ITO",
    "PAGE_IN",
    "PNG_DPI",
    "FigureFormat",
    "figure",
    "legend_below",
    "legend_right",
    "parse_format",
    "save_figure",
    "series_style",
    "slot_times",
    "time_axis",
]

#: Okabe-Ito colours (orange, sky blue, bluish green, yellow, blue, vermillion, reddish purple,
#: black) and a ninth, grey.
OKABE_ITO: tuple[str, ...] = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00",
                              "#CC79A7", "#000000", "#999999")
#: One marker per series (nine distinct shapes).
MARKERS: tuple[str, ...] = ("o", "s", "^", "D", "v", "P", "X", "<", "*")
_LINESTYLES: tuple[Any, ...] = ("-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1)),
                                (0, (1, 1)), (0, (5, 3, 1, 3)), (0, (7, 2)))
#: Width of one journal column and of a full page, inches.
COLUMN_IN = 3.5
#: Resolution of PNG figures (dots per inch).
PNG_DPI = 300
PAGE_IN = 7.16


class FigureFormat(StrEnum):
    """File format of a saved figure."""

    PNG = "png"
    SVG = "svg"
    PDF = "pdf"


def parse_format(text: str | FigureFormat) -> FigureFormat:
    """A ``--format`` value (``png``, ``svg`` or ``pdf``, any case) as a :class:`FigureFormat`.

    Raises
    ------
    GreenSchedError
        Any other value, naming the ones accepted.
    """
    try:
        return FigureFormat(str(text).lower().lstrip("."))
    except ValueError:
        raise GreenSchedError(f"figure format {text!r} is not supported; expected one of "
                              f"{', '.join(x.value for x in FigureFormat)}") from None


def series_style(i: int) -> dict[str, Any]:
    """Colour, marker and line style of series ``i`` (nine distinct, then repeating)."""
    k = i % len(OKABE_ITO)
    return {"color": OKABE_ITO[k], "marker": MARKERS[k], "linestyle": _LINESTYLES[k]}


def _pyplot() -> Any:
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "cairo"):
        try:
            matplotlib.use("Agg")
        except Exception:  # pragma: no cover - a backend already in use elsewhere
            pass
    import matplotlib.pyplot as plt

    return plt


def figure(nrows: int = 1, ncols: int = 1, *, width: str | float = "column",
           aspect: float = 0.62, sharex: bool = False) -> tuple[Any, Any]:
    """A figure of paper width (``"column"``, ``"page"`` or inches) with the house style.

    ``aspect`` is the height of one row of panels over the figure width.
    """
    plt = _pyplot()
    w = {"column": COLUMN_IN, "page": PAGE_IN}.get(width, width) if isinstance(width, str) \
        else float(width)
    if isinstance(w, str):
        raise GreenSchedError(f"figure width {width!r}: expected 'column', 'page' or inches")
    rc = {"font.size": 8, "axes.titlesize": 8.5, "axes.labelsize": 8, "legend.fontsize": 7,
          "xtick.labelsize": 7, "ytick.labelsize": 7, "lines.linewidth": 1.2,
          "lines.markersize": 3.5, "axes.grid": True, "grid.alpha": 0.3,
          "axes.prop_cycle": plt.cycler(color=list(OKABE_ITO)),
          "svg.hashsalt": "greensched", "pdf.fonttype": 42}
    plt.rcParams.update(rc)  # titles, labels and legends made later follow the style too
    fig, axes = plt.subplots(nrows, ncols, figsize=(w, w * aspect * nrows), sharex=sharex,
                             layout="constrained")
    return fig, axes


def slot_times(start: str | pd.Timestamp | None, slots: Sequence[int] | np.ndarray,
               tz: str | None = None) -> pd.DatetimeIndex | None:
    """Timestamps of hourly ``slots`` after ``start`` (UTC), in ``tz``; ``None`` without a
    start (synthetic scenarios)."""
    if start is None:
        return None
    t0 = pd.Timestamp(start)
    t0 = t0.tz_localize("UTC") if t0.tzinfo is None else t0.tz_convert("UTC")
    idx = t0 + pd.to_timedelta(np.asarray(slots, dtype=float), unit="h")
    return pd.DatetimeIndex(idx).tz_convert(tz or "UTC")


def time_axis(ax: Any, times: pd.DatetimeIndex, *, label: str = "time") -> None:
    """Label ``ax``'s x axis as dates and hours in the times' zone (zone named in the label)."""
    import matplotlib.dates as mdates

    tz = times.tz
    span_h = (times.max() - times.min()) / pd.Timedelta(hours=1) if len(times) else 0
    locator = mdates.AutoDateLocator(tz=tz, minticks=3, maxticks=7)
    fmt = "%H:%M" if span_h <= 24 else "%b %d\n%H:%M"
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.DateFormatter(fmt, tz=tz))
    day = times.min().strftime("%Y-%m-%d") if len(times) else ""
    ax.set_xlabel(f"{label} ({tz}{', from ' + day if day else ''})")


def legend_below(fig: Any, axes: Sequence[Any], ncol: int = 3, **kw: Any) -> Any:
    """One legend for ``axes`` (labels deduplicated) under the figure, outside the data."""
    seen: dict[str, Any] = {}
    for ax in axes:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label and not label.startswith("_"):
                seen.setdefault(label, h)
    return fig.legend(list(seen.values()), list(seen), loc="outside lower center", ncol=ncol,
                      frameon=False, **kw)


def legend_right(ax: Any, **kw: Any) -> Any:
    """``ax``'s legend to the right of its panel, outside the data."""
    return ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0,
                     frameon=False, **kw)


def save_figure(fig: Any, path: str | Path, fmt: str | FigureFormat | None = None) -> Path:
    """Save ``fig`` as ``path`` with suffix ``fmt`` (default: the path's suffix, else png).

    PNG at 300 dpi; SVG and PDF are vector.  Metadata that changes between runs (software
    version, creation date) is left out.  The figure is closed.
    """
    p = Path(path)
    f = parse_format(fmt if fmt is not None else (p.suffix.lstrip(".") or "png"))
    p = p.with_suffix("." + f.value)
    meta: dict[str, Any] = {"png": {"Software": None}, "svg": {"Date": None, "Creator": None},
                            "pdf": {"CreationDate": None, "Creator": None, "Producer": None}}[
        f.value]
    fig.savefig(p, format=f.value, dpi=PNG_DPI if f is FigureFormat.PNG else None,
                metadata=meta)
    _pyplot().close(fig)
    return p
