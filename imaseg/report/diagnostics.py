"""Report sections that let a reader trust the numbers: sanity checks, worst-case members, IMA margins."""

from __future__ import annotations

from pathlib import Path

from imaseg.report import plots
from imaseg.report.collect import RunData
from imaseg.report.document import Document
from imaseg.run import RunDir
from imaseg.summary import DeterminismCheck, MaskingCheck

__all__ = ["checks_section", "margins_section"]


def checks_section(doc: Document, runs: list[RunData]) -> None:
    """The sanity checks of every run, and which attack won the worst case where it was an ensemble."""
    doc.heading("Sanity checks")
    for r in runs:
        checks = r.evaluation.checks
        zero = checks.forward_deterministic or DeterminismCheck()
        doc.paragraph(
            f"{r.name}: forward pass deterministic (eps = 0 equals clean Dice): {'yes' if zero.ok else 'NO'} "
            f"(max difference {zero.max_abs_diff:.2g})."
        )
        if checks.noise_weaker_than_attack:
            verdict = "yes" if all(n.ok for n in checks.noise_weaker_than_attack) else "NO"
            doc.paragraph(f"{r.name}: noise weaker than the attack at every budget: {verdict}.")
        if checks.dice_falls_with_eps:
            verdict = "yes" if all(f.ok for f in checks.dice_falls_with_eps) else "NO"
            doc.paragraph(f"{r.name}: Dice never rises with the budget: {verdict}.")
        steps = checks.steps_2x
        if steps is not None:
            verdict = "passed" if steps.ok else "FAILED"
            doc.paragraph(
                f"{r.name}: {steps.attack} at eps {steps.eps:g} on {len(steps.cases)} cases: Dice {steps.dice_steps:.3f} "
                f"with the evaluated steps, {steps.dice_2x_steps:.3f} with twice as many at the same step size ({verdict})."
            )
        for row, what in ((checks.gradient_free, "random search (gradient-free)"), (checks.transfer, "transfer")):
            if row is not None:
                doc.paragraph(f"{r.name}: {_masking_words(row, what)}")
        failed = r.evaluation.failed_checks()
        if failed:
            doc.paragraph(f"{r.name}: failed checks: {', '.join(failed)} (`imaseg evaluate --strict` fails).", "warn")
        for warning in checks.warnings:
            doc.paragraph(f"{r.name}: warning: {warning}", "warn")
        _member_wins(doc, r)


def _surrogate_name(checkpoint: str) -> str:
    """``RUN/checkpoints/last.pt`` -> ``run RUN (last.pt)``: the run's name, not where it lay on disk.

    >>> _surrogate_name("/tmp/x/runs/std/checkpoints/last.pt")
    'run std (last.pt)'
    """
    path = Path(checkpoint)
    if path.parent.name == RunDir.CHECKPOINTS:
        return f"run {RunDir.of_checkpoint(path).name} ({path.name})"
    return path.name


def _masking_words(row: MaskingCheck, what: str) -> str:
    """One gradient-masking check in words: what ran where, against what, and the verdict."""
    surrogate = _surrogate_name(row.surrogate) if row.surrogate else ""
    source = f" crafted on {surrogate} and applied to the model" if surrogate else ""
    if row.ok is None or row.dice is None:
        return (
            f"gradient masking, {what} ({row.attack}{source}) at eps {row.eps:g}: not run ({row.note or 'no result'})."
        )
    verdict = "passed" if row.ok else "FAILED: possible gradient masking"
    return (
        f"gradient masking, {what}: {row.attack}{source} at eps {row.eps:g} on {len(row.cases)} cases reaches Dice "
        f"{row.dice:.3f}; the gradient attacks' worst ({row.gradient_attack}) {row.gradient_dice:.3f} ({verdict})."
    )


def _member_wins(doc: Document, run: RunData) -> None:
    """How many slices each member attack won in the worst case, per budget (from the summary)."""
    for attack, entry in run.evaluation.attacks.items():
        wins = [cell.members_won for cell in entry.cells]
        if not any(wins):
            continue
        members = sorted({m for w in wins if w for m in w})
        rows = [[f"{e:g}", *[w.get(m, 0) for m in members]] for e, w in zip(entry.eps, wins)]
        doc.table(
            ["eps", *members],
            rows,
            caption=f"{run.name}: samples (slices, or volumes in 3D) where each attack gave the {attack} prediction "
            "(chosen for the lowest global Dice; per sample in worst_members.csv).",
        )


def _margin_range(margins: dict | None) -> str:
    """The rule the margins follow, from ``margins.json``: the published one, or with a floor at ``eps_min``."""
    if not margins or "eps_max" not in margins:
        return ""
    floor, delta, top = margins.get("eps_min") or 0.0, margins["delta"], margins["eps_max"]
    rule = f"a floor at eps_min {floor:g}" if floor > 0 else "the published rule"
    return f" They start at {max(delta, floor):g} and stay within [{floor:g}, {top:g}] ({rule})."


def margins_section(doc: Document, run: RunData) -> None:
    """IMA's margins: their histogram over epochs and the voxel flip statistics."""
    doc.heading(f"IMA margins: {run.name}")
    doc.image(
        f"margins_{run.name}",
        plots.margin_histograms(run),
        "Per-sample margins (L2 radius in model-input units) "
        "at the first, middle and last epoch, and their mean and quartiles per epoch." + _margin_range(run.margins),
    )
    if run.margins is None:  # called for runs with margins only
        raise RuntimeError(f"{run.name}: no IMA margins")
    last = run.margins["epochs"][-1]
    voxels = last.get("voxels")
    if voxels:
        rows = []
        for name, regions in voxels["classes"].items():
            for region, stats in regions.items():
                rows.append([name, region, stats["voxels"], stats["clean_wrong_fraction"], stats["flipped_fraction"]])
        doc.table(
            ["class", "region", "voxels", "wrong when clean", "flipped inside the margin"],
            rows,
            caption=f"Voxel-level record of the last epoch ({last['epoch']}): boundary = voxels touching another class.",
        )
