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

__all__ = ["dice_vs_eps", "hd95_vs_eps", "margin_histograms", "overlay_figure", "plain_text", "training_curves"]

P = ParamSpec("P")
R = TypeVar("R")

LABEL_COLOURS = ListedColormap(
    [
        (0, 0, 0, 0),
        (0.95, 0.3, 0.25, 0.55),
        (0.3, 0.85, 0.35, 0.55),
        (0.25, 0.5, 1.0, 0.55),
        (0.95, 0.8, 0.2, 0.55),
        (0.8, 0.3, 0.9, 0.55),
    ]
)


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
    entry = run.evaluation["attacks"][attack]
    eps = np.array(entry["eps"], dtype=float)
    if metric == "dice":
        per_class = np.array([c["dice"]["global"] for c in entry["cells"]], dtype=float)  # (E, K)
    else:
        per_class = np.array([c["hd95"] for c in entry["cells"]], dtype=float)
    return eps, per_class


@plain_text
def dice_vs_eps(runs: list[RunData], attack: str, metric: str = "dice") -> bytes:
    """One panel per foreground class plus their mean; one line per run (global voxel Dice)."""
    runs = [r for r in runs if r.summary and attack in r.summary["attacks"]]
    classes = runs[0].evaluation["classes"]
    panels = [*classes.values(), "mean over classes"]
    figure, axes = _subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), sharey=metric == "dice")
    axes = np.atleast_1d(axes)
    for run in runs:
        eps, per_class = _attack_curves(run, attack, metric)
        with np.errstate(all="ignore"):
            series = [*per_class.T, np.nanmean(per_class, axis=1)]
        for axis, values in zip(axes, series):
            axis.plot(eps, values, marker="o", label=f"{run.name}: {run.method}")
    norm = runs[0].evaluation["attacks"][attack]["norm"]
    unit = "L2 over the sample" if norm == "l2" else "Linf"
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


@plain_text
def training_curves(runs: list[RunData]) -> bytes:
    figure, (left, right) = _subplots(1, 2, figsize=(10, 3.2))
    for run in runs:
        if not run.log:
            continue
        epochs = [r["epoch"] for r in run.log]
        left.plot(epochs, [r.get("loss", np.nan) for r in run.log], label=run.name)
        right.plot(epochs, [r.get("val_dice", np.nan) for r in run.log], label=f"{run.name} clean")
        right.plot(epochs, [r.get("val_robust_dice", np.nan) for r in run.log], "--", label=f"{run.name} attacked")
    left.set_title("training loss")
    left.set_xlabel("epoch")
    right.set_title("validation Dice (global voxel)")
    right.set_xlabel("epoch")
    for axis in (left, right):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    return _png(figure)


@plain_text
def overlay_figure(overlay: dict, run_name: str) -> bytes:
    """Row 1: image, ground truth, clean prediction. One row per attack: attacked prediction, the
    perturbation (amplified to its own maximum, scale on the colour bar) and the per-voxel flip-norm
    map where recorded."""
    attacks = overlay["meta"]["attacks"]
    rows = 1 + len(attacks)
    figure, axes = _subplots(rows, 3, figsize=(9.5, 3.0 * rows), squeeze=False)
    image = overlay["image"].T

    def show(axis, layer=None, title=""):
        axis.imshow(image, cmap="gray", origin="lower")
        if layer is not None:
            axis.imshow(layer.T, cmap=LABEL_COLOURS, vmin=0, vmax=5, origin="lower", interpolation="nearest")
        axis.set_title(title, fontsize=9)

    show(axes[0, 0], None, "image")
    show(axes[0, 1], overlay["label"], "ground truth")
    show(axes[0, 2], overlay["clean"], "clean prediction")
    for k, item in enumerate(attacks, start=1):
        name, eps = item["attack"], item["eps"]
        show(axes[k, 0], overlay[f"pred__{name}"], f"{name}, eps {eps:g}")
        delta = overlay[f"delta__{name}"].T
        scale = float(np.abs(delta).max()) or 1.0
        shown = axes[k, 1].imshow(delta, cmap="seismic", vmin=-scale, vmax=scale, origin="lower")
        axes[k, 1].set_title(f"perturbation (max |d| = {scale:.3g})", fontsize=9)
        figure.colorbar(shown, ax=axes[k, 1], fraction=0.046)
        flips = overlay.get(f"flips__{name}")
        if flips is not None:
            radius = np.where(np.isfinite(flips), flips, np.nan).T
            axes[k, 2].imshow(image, cmap="gray", origin="lower", alpha=0.4)
            shown = axes[k, 2].imshow(radius, cmap="magma_r", origin="lower", vmin=0, vmax=float(eps))
            axes[k, 2].set_title("flip norm along the path (upper bound; blank: never flipped)", fontsize=9)
            figure.colorbar(shown, ax=axes[k, 2], fraction=0.046)
        else:
            axes[k, 2].set_visible(False)
    for axis in axes.ravel():
        axis.set_xticks([])
        axis.set_yticks([])
    slice_text = f", slice {overlay['meta']['slice']}" if overlay["meta"].get("slice") is not None else ""
    figure.suptitle(f"{run_name}: case {overlay['meta']['case']}{slice_text}", fontsize=11)
    return _png(figure)
