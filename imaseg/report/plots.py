"""Matplotlib figures of the report, returned as PNG bytes.

Figures are built as :class:`matplotlib.figure.Figure` objects drawn by the Agg canvas directly, without
pyplot: importing this module never switches the backend of the process (inline plots in a notebook keep
working) and no figure is left open.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from imaseg.report.collect import RunData
from imaseg.utils.units import PHYSICAL_UNITS

__all__ = [
    "class_colours",
    "dice_vs_eps",
    "hd95_vs_eps",
    "margin_histograms",
    "overlay_figure",
    "plain_text",
    "training_curves",
    "validation_series",
]

P = ParamSpec("P")
R = TypeVar("R")


def plain_text(function: Callable[P, R]) -> Callable[P, R]:
    """Run a plot with mathtext off: case ids and run names are text, ``$x$`` in one must not parse (or crash)."""

    @functools.wraps(function)
    def wrapped(*args: P.args, **kwargs: P.kwargs) -> R:
        with matplotlib.rc_context({"text.parse_math": False}):
            return function(*args, **kwargs)

    return wrapped


def _subplots(*args, figsize, **kwargs):
    figure = Figure(figsize=figsize)
    FigureCanvasAgg(figure)
    return figure, figure.subplots(*args, **kwargs)


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def _attack_curves(run: RunData, attack: str, metric: str):
    entry = run.evaluation.curve(attack)
    eps = np.array(entry.eps, dtype=float)
    if metric == "dice":
        per_class = np.array([c.class_dice() for c in entry.cells], dtype=float)  # (E, K)
    else:
        per_class = np.array([c.hd95 for c in entry.cells], dtype=float)
    return eps, per_class


@plain_text
def dice_vs_eps(runs: list[RunData], attack: str, metric: str = "dice") -> bytes:
    """One panel per foreground class plus their mean; one line per run (global voxel Dice)."""
    runs = [r for r in runs if r.summary and attack in r.summary.attacks]
    panels = [*runs[0].evaluation.class_names, "mean over classes"]
    figure, axes = _subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), sharey=metric == "dice")
    axes = np.atleast_1d(axes)
    for run in runs:
        eps, per_class = _attack_curves(run, attack, metric)
        with np.errstate(all="ignore"):
            series = [*per_class.T, np.nanmean(per_class, axis=1)]
        for axis, values in zip(axes, series):
            axis.plot(eps, values, marker="o", label=f"{run.name}: {run.method}")
    norm = runs[0].evaluation.curve(attack).norm
    rms = runs[0].evaluation.settings.eps_unit == "rms"
    unit = ("per-voxel RMS" if rms else "L2 over the sample") if norm == "l2" else PHYSICAL_UNITS.get(norm, "Linf")
    for axis, title in zip(axes, panels):
        axis.set_title(title)
        axis.set_xlabel(f"eps ({unit})")
        axis.grid(alpha=0.3)
        if metric == "dice":
            axis.set_ylim(0, 1)
    axes[0].set_ylabel("Dice (global voxel)" if metric == "dice" else "HD95 (mm, preprocessed grid)")
    axes[-1].legend(fontsize=7, loc="best")
    figure.suptitle(f"{'Dice' if metric == 'dice' else 'HD95'} under {attack}", fontsize=11)
    return _png(figure)


@plain_text
def hd95_vs_eps(runs: list[RunData], attack: str) -> bytes:
    return dice_vs_eps(runs, attack, metric="hd95")


@plain_text
def margin_histograms(run: RunData) -> bytes:
    """IMA margins at the first, middle and last logged epoch, plus mean and quantiles per epoch."""
    if run.margins is None:  # called for runs with a margins file only
        raise RuntimeError(f"{run.name}: no IMA margins")
    epochs = run.margins["epochs"]
    chosen = sorted({0, len(epochs) // 2, len(epochs) - 1})
    figure, (left, right) = _subplots(1, 2, figsize=(10, 3.2))
    eps_max = run.margins["eps_max"]
    for i in chosen:
        left.hist(epochs[i]["margins"], bins=30, range=(0, eps_max), alpha=0.5, label=f"epoch {epochs[i]['epoch']}")
    left.set_xlabel("margin (L2, model-input units)")
    left.set_ylabel("samples")
    left.legend(fontsize=8)
    left.set_title("per-sample margins")
    x = [e["epoch"] for e in epochs]
    right.plot(x, [e["margin_mean"] for e in epochs], label="mean")
    right.fill_between(
        x, [e["margin_q25"] for e in epochs], [e["margin_q75"] for e in epochs], alpha=0.3, label="25-75%"
    )
    right.plot(x, [e["margin_at_max"] * eps_max for e in epochs], "--", label="fraction at eps_max (x eps_max)")
    right.set_xlabel("epoch")
    right.set_title("margin dynamics")
    right.legend(fontsize=8)
    return _png(figure)


# log.csv column -> (legend, line style) of the validation panel
_VALIDATION_SERIES = {
    "val_dice": ("clean", "-"),
    "val_robust_dice": ("attacked", "--"),
    "val_pseudo_dice": ("nnU-Net pseudo Dice", ":"),
}


def validation_series(log: list[dict]) -> list[tuple[str, str, np.ndarray]]:
    """``(legend, line style, values per epoch)`` of each validation series ``log`` holds (nnU-Net logs its
    pseudo Dice only; a run trained without attacked validation has no attacked curve).

    >>> [what for what, _, _ in validation_series([{"epoch": 1, "val_dice": 0.5, "val_robust_dice": float("nan")}])]
    ['clean']
    """
    series = []
    for key, (what, style) in _VALIDATION_SERIES.items():
        values = np.array([row.get(key, np.nan) for row in log], dtype=float)
        if np.isfinite(values).any():
            series.append((what, style, values))
    return series


@plain_text
def training_curves(runs: list[RunData]) -> bytes:
    figure, (left, right) = _subplots(1, 2, figsize=(10, 3.2))
    for i, run in enumerate(runs):
        if not run.log:
            continue
        epochs = [r["epoch"] for r in run.log]
        colour = f"C{i % 10}"  # one colour per run in both panels
        left.plot(epochs, [r.get("loss", np.nan) for r in run.log], color=colour, label=run.name)
        for what, style, values in validation_series(run.log):
            right.plot(epochs, values, style, color=colour, label=f"{run.name} {what}")
    left.set_title("training loss")
    left.set_xlabel("epoch")
    right.set_title("validation Dice (global voxel)")
    right.set_xlabel("epoch")
    for axis in (left, right):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    return _png(figure)


def class_colours(count: int) -> list[tuple[float, float, float, float]]:
    """One colour per class index (0 transparent), from a qualitative palette: any data set, any labels."""
    tab10 = matplotlib.colormaps["tab10"]
    colours: list[tuple[float, float, float, float]] = [(0.0, 0.0, 0.0, 0.0)]
    for i in range(1, count):
        red, green, blue, _ = tab10(((i - 1) % 10) / 9.999)
        colours.append((float(red), float(green), float(blue), 0.6))
    return colours


def _slice_dice(pred: np.ndarray, label: np.ndarray, classes: int) -> float:
    """Mean over the classes present in either map of the panel's Dice (1.0 when none is)."""
    scores = []
    for c in range(1, classes):
        p, t = pred == c, label == c
        if p.any() or t.any():
            scores.append(2.0 * float((p & t).sum()) / float(p.sum() + t.sum()))
    return float(np.mean(scores)) if scores else 1.0


def _errors(pred: np.ndarray, label: np.ndarray) -> np.ndarray:
    """1: missed or wrong class (ground truth foreground), 2: false alarm (ground truth background)."""
    wrong = pred != label
    return np.where(wrong & (label > 0), 1, np.where(wrong & (label == 0), 2, 0))


MISSED, FALSE_ALARM = (0.9, 0.1, 0.1), (1.0, 0.85, 0.0)
ERROR_COLOURS = ListedColormap([(0, 0, 0, 0), (*MISSED, 0.75), (*FALSE_ALARM, 0.75)])


@plain_text
def overlay_figure(overlay: dict, run_name: str) -> bytes:
    """Row 1: image, ground truth, clean prediction (with its Dice), its errors, the class legend. One row per
    gradient attack: the attacked image, the perturbation (amplified to its own maximum), the attacked
    prediction (with its Dice), its errors against the ground truth, and the flip norms from 0 to eps
    (never flipped in a colour of its own). Labels and colours come from the data set's names."""
    meta = overlay["meta"]
    names = {int(k): v for k, v in (meta.get("labels") or {}).items()}
    label = overlay["label"]
    classes = max([int(label.max()), int(overlay["clean"].max()), *names.keys(), 1]) + 1
    labels_map = ListedColormap(class_colours(classes))
    attacks = meta["attacks"]
    rows = 1 + len(attacks)
    figure, axes = _subplots(rows, 5, figsize=(15.5, 3.1 * rows), squeeze=False)
    image = overlay["image"].T
    span = (float(image.min()), float(image.max()))

    def show(axis, layer=None, title="", cmap=labels_map, base=image, vmax=None):
        axis.imshow(base, cmap="gray", origin="lower", vmin=span[0], vmax=span[1])
        if layer is not None:
            top = classes - 1 if vmax is None else vmax
            axis.imshow(layer.T, cmap=cmap, vmin=0, vmax=top, origin="lower", interpolation="nearest")
        axis.set_title(title, fontsize=9)

    show(axes[0, 0], None, "image")
    show(axes[0, 1], label, "ground truth")
    show(axes[0, 2], overlay["clean"], f"clean prediction (Dice {_slice_dice(overlay['clean'], label, classes):.2f})")
    show(axes[0, 3], _errors(overlay["clean"], label), "clean errors", ERROR_COLOURS, vmax=2)
    _legend(axes[0, 4], names, classes)
    for k, item in enumerate(attacks, start=1):
        _attack_row(figure, axes[k], overlay, item, show, classes)
    for axis in axes.ravel():
        axis.set_xticks([])
        axis.set_yticks([])
    slice_text = f", slice {meta['slice']} (largest Dice drop)" if meta.get("slice") is not None else ""
    figure.suptitle(f"{run_name}: case {meta['case']}{slice_text}", fontsize=11)
    return _png(figure)


def _legend(axis, names: dict[int, str], classes: int) -> None:
    from matplotlib.patches import Patch

    colours = class_colours(classes)
    handles = [Patch(color=colours[c][:3], label=names.get(c, f"class {c}")) for c in range(1, classes)]
    handles += [
        Patch(color=MISSED, label="error: missed / wrong class"),
        Patch(color=FALSE_ALARM, label="error: false alarm"),
    ]
    axis.legend(handles=handles, loc="center", fontsize=8, frameon=False)
    axis.axis("off")


def _attack_row(figure, axes, overlay: dict, item: dict, show, classes: int) -> None:
    name, eps = item["attack"], float(item["eps"])
    label, image = overlay["label"], overlay["image"]
    prediction = overlay[f"pred__{name}"]
    delta = overlay[f"delta__{name}"]
    show(axes[0], None, f"attacked image: {name}, eps {eps:g}", base=(image + delta).T)
    scale = float(np.abs(delta).max()) or 1.0
    shown = axes[1].imshow(delta.T, cmap="seismic", vmin=-scale, vmax=scale, origin="lower")
    axes[1].set_title(f"perturbation (max |d| = {scale:.3g})", fontsize=9)
    figure.colorbar(shown, ax=axes[1], fraction=0.046)
    show(axes[2], prediction, f"attacked prediction (Dice {_slice_dice(prediction, label, classes):.2f})")
    show(axes[3], _errors(prediction, label), "attacked errors", ERROR_COLOURS, vmax=2)
    flips = overlay.get(f"flips__{name}")
    if flips is None:
        axes[4].set_visible(False)
        return
    never = matplotlib.colormaps["magma_r"].with_extremes(over=(0.55, 0.8, 1.0))
    radius = np.where(np.isfinite(flips), flips, 2 * eps + 1).T  # never flipped: above the scale
    shown = axes[4].imshow(radius, cmap=never, origin="lower", vmin=0, vmax=eps, interpolation="nearest")
    axes[4].set_title("flip norm along the path, 0..eps\n(upper bound; light blue: never flipped)", fontsize=9)
    figure.colorbar(shown, ax=axes[4], fraction=0.046, extend="max")
