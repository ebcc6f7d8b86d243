"""The study plot: clean Dice against Dice at the report's budget, one point per configuration. No torch here."""

from __future__ import annotations

import itertools
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING

from imaseg.study.report_config import SWEEP_MARKERS, ReportSettings

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.lines import Line2D

__all__ = ["plot", "plot_title", "point_colours", "zoomed_settings"]

OTHER_MARKERS = "XDph*P<>8H"  # configurations on no sweep and without a declared marker, in order
SPLIT_WORDS = {"val": "validation"}  # how the title names the evaluated split (else as it is)
SHADES = (-0.45, 0.45)  # darkest and lightest shade of a method's colour, as fractions towards black / white
ZOOM_SPAN = 0.25  # the points above a wide gap in attacked Dice get a zoom panel if they span at most this share


def _shade(colour: str, amount: float) -> tuple[float, float, float]:
    """``colour`` moved ``amount`` of the way towards white (> 0) or black (< 0)."""
    from matplotlib.colors import to_rgb

    r, g, b = to_rgb(colour)
    if amount >= 0:
        return (r + (1.0 - r) * amount, g + (1.0 - g) * amount, b + (1.0 - b) * amount)
    return (r * (1.0 + amount), g * (1.0 + amount), b * (1.0 + amount))


def _folds(folds: list[int], separator: str) -> str:
    """``"fold 3"`` or ``"folds 0, 1"``."""
    return f"{'fold' if len(folds) == 1 else 'folds'} {separator.join(map(str, folds))}"


def plot_title(title: str, folds: list[int], split: str) -> str:
    """The declared title and the cases scored, ``"T, validation patients of folds 0, 1"``, unless the title
    already names the split (``"ACDC (folds 3-4, test patients)"`` stays as it is)."""
    words = SPLIT_WORDS.get(split, split)
    if re.search(rf"\b{re.escape(words)}\b", title, re.IGNORECASE):
        return title
    return f"{title}, {words} patients of {_folds(folds, ', ')}"


def point_colours(methods: dict, settings: ReportSettings) -> dict[str, str | tuple[float, float, float]]:
    """Each configuration's colour: its own from ``settings.colours`` if declared, else its method's; where a
    method has several configurations on no curve, those get shades of the method's colour, dark to light in
    order, so that they can be told apart (a curve's points keep the colour of its line)."""
    on_curve = {s for c in settings.curves for s in c.settings}
    colours: dict[str, str | tuple[float, float, float]] = {}
    loose: dict[str, list[str]] = {}
    for setting, entry in methods.items():
        colours[setting] = settings.colours.get(setting) or settings.colours.get(entry["method"], "grey")
        if setting not in settings.colours and setting not in on_curve:
            loose.setdefault(entry["method"], []).append(setting)
    for group in loose.values():
        if len(group) > 1:
            low, high = SHADES
            for i, setting in enumerate(group):
                colours[setting] = _shade(str(colours[setting]), low + (high - low) * i / (len(group) - 1))
    return colours


def _label(setting: str, done: list[int], folds: list[int]) -> str:
    """The legend entry; a configuration not yet on every fold says so (it is not comparable with the others)."""
    if done == folds:
        return setting
    return f"{setting} ({_folds(done, ',')} only)"


def zoomed_settings(points: dict[str, tuple[float, float]]) -> list[str]:
    """The configurations worth a zoom panel: those above the widest gap in attacked Dice, where at least two lie
    above it, the gap is at least half the whole range and the points above it span at most ``ZOOM_SPAN`` of it
    (e.g. robust models far above STD), else none. Points without a finite Dice are left out.

    >>> zoomed_settings({"std": (0.95, 0.18), "a": (0.93, 0.86), "b": (0.94, 0.82)})
    ['a', 'b']
    >>> zoomed_settings({"a": (0.93, 0.86), "b": (0.94, 0.5), "c": (0.9, 0.2)})
    []
    """
    finite = {s: y for s, (_, y) in points.items() if math.isfinite(y)}
    ordered = sorted(finite, key=finite.__getitem__)
    if len(ordered) < 3:
        return []
    ys = [finite[s] for s in ordered]
    whole = ys[-1] - ys[0]
    gaps = [ys[i + 1] - ys[i] for i in range(len(ys) - 1)]
    widest = max(range(len(gaps)), key=gaps.__getitem__)
    above = ordered[widest + 1 :]
    if len(above) < 2 or gaps[widest] < 0.5 * whole or ys[-1] - ys[widest + 1] > ZOOM_SPAN * whole or whole <= 0:
        return []
    return sorted(above, key=list(points).index)


def _draw_points(axis: Axes, summary: dict, settings: ReportSettings, shown: list[str]) -> list[Line2D]:
    """The curves and points of the configurations ``shown`` on ``axis``; returns their legend handles."""
    from matplotlib.lines import Line2D

    budget, methods = settings.budget_key, summary["methods"]
    points = {s: (methods[s]["clean"]["dice"], methods[s][budget]["dice"]) for s in shown}
    folds = sorted({f for e in methods.values() for f in e["folds"]})
    for curve in settings.curves:
        xy = [points[s] for s in curve.settings if s in points]
        if len(xy) > 1:
            line_colour = settings.colours.get(curve.method, "grey")
            axis.plot(*zip(*xy, strict=True), color=line_colour, alpha=0.5, linewidth=1.5, zorder=1)
    shapes = itertools.cycle(OTHER_MARKERS)  # more configurations than shapes: colours tell them apart
    sweeps = [c.settings for c in settings.curves if c.sweep]
    on_curve = {s for c in settings.curves for s in c.settings}
    compared = settings.compare.method if settings.compare else None
    colours, handles = point_colours(methods, settings), []
    for setting in [s for s in methods if budget in methods[s]]:  # every one takes its shape, shown or not
        entry = methods[setting]
        sweep = next((m for m in sweeps if setting in m), None)
        marker = SWEEP_MARKERS[sweep.index(setting)] if sweep else (settings.markers.get(setting) or next(shapes))
        if setting not in points:
            continue
        (x, y), colour = points[setting], colours[setting]
        face = "white" if entry["method"] == compared and setting not in on_curve else colour
        axis.errorbar(
            x,
            y,
            xerr=[[x - entry["clean"]["ci"][0]], [entry["clean"]["ci"][1] - x]],
            yerr=[[y - entry[budget]["ci"][0]], [entry[budget]["ci"][1] - y]],
            marker=marker,
            markersize=7,
            color=colour,
            markerfacecolor=face,
            ecolor=colour,
            elinewidth=0.7,
            alpha=0.9,
            capsize=2,
            zorder=2,
        )
        label = _label(setting, sorted(set(entry["folds"])), folds)
        handles.append(Line2D([], [], linestyle="none", marker=marker, markersize=8, color=colour,
                              markerfacecolor=face, label=label))  # fmt: skip
    axis.set_xlabel("clean global Dice (95% CI over patients)")
    axis.grid(alpha=0.3)
    return handles


def plot(summary: dict, settings: ReportSettings, path: str | Path, *, split: str = "test") -> None:
    """Clean Dice against Dice at ``settings.budget``, each configuration with its 95% intervals; the declared
    curves joined by lines (sweeps mark their points v, o, ^ in order); configurations of the compared method
    on no curve drawn hollow. Where a few configurations sit far below the rest under attack (STD, typically),
    a second panel zooms on the rest (:func:`zoomed_settings`), so that the robust ones can be told apart.

    Args:
        summary: :func:`imaseg.study.pooling.pooled`'s figures.
        settings: the study's report settings (budget, curves, colours, markers, texts).
        path: the PNG to write.
        split: the cases the cells were scored on (``EvalConfig.split``), named in the title.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    budget, methods = settings.budget_key, summary["methods"]
    shown = [s for s, e in methods.items() if budget in e]
    zoomed = zoomed_settings({s: (methods[s]["clean"]["dice"], methods[s][budget]["dice"]) for s in shown})
    figure = Figure(figsize=(15.5 if zoomed else 9.5, 5.5))
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 2 if zoomed else 1, squeeze=False)[0]
    handles = _draw_points(axes[0], summary, settings, shown)
    axes[0].set_ylabel(settings.plot.ylabel or f"global Dice at eps {budget} (95% CI)")
    folds = sorted({f for e in methods.values() for f in e["folds"]})
    if zoomed:
        _draw_points(axes[1], summary, settings, zoomed)
        axes[1].set_title(f"zoom: the {len(zoomed)} configurations above the gap (dashed box)", fontsize=10)
        (x0, x1), (y0, y1) = axes[1].get_xlim(), axes[1].get_ylim()
        box = Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, linestyle="--", edgecolor="grey", linewidth=0.8)
        axes[0].add_patch(box)
        figure.suptitle(plot_title(settings.plot.title, folds, split))
    else:
        axes[0].set_title(plot_title(settings.plot.title, folds, split))
    axes[-1].legend(
        handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), title=settings.plot.legend_title
    )
    figure.savefig(path, dpi=130, bbox_inches="tight")
