"""The report's figures, each from plain data to a matplotlib Figure (no MLflow here)."""

import textwrap
import warnings

import matplotlib
import numpy as np
import optuna
from matplotlib.figure import Figure
from sklearn.metrics import ConfusionMatrixDisplay

from visionsweep import metrics
from visionsweep.task import is_multilabel

MONTAGE_IMAGES = 24  # test images in the error montage
MONTAGE_COLUMNS = 8


def learning_curves(trials, metric: str, rungs: list[float], max_epochs: int) -> Figure:
    """The search metric per epoch of every trial; a pruned trial ends in an x at the rung that stopped it."""
    figure = Figure(figsize=(9, 4.5))
    ax = figure.subplots()
    for rung in rungs:
        if rung < max_epochs:
            ax.axvline(rung, color="0.8", linestyle=":", zorder=0)
    styles = {"complete": dict(color="tab:blue", alpha=0.6), "pruned": dict(color="0.55", alpha=0.6)}
    for trial in sorted(trials, key=lambda t: t.outcome == "complete"):  # complete lines on top
        if not trial.curve or trial.outcome not in styles:
            continue
        epochs, values = zip(*trial.curve)
        ax.plot(epochs, values, linewidth=1, **styles[trial.outcome])
        if trial.outcome == "pruned":
            ax.plot(epochs[-1], values[-1], "x", color="tab:red", markersize=6)
    best = trials[0] if trials and trials[0].best is not None and trials[0].curve else None
    if best:
        epochs, values = zip(*best.curve)
        ax.plot(epochs, values, color="tab:orange", linewidth=2.5, label=f"best: trial {best.name}")
    ax.plot([], [], color="tab:blue", label="ran every epoch")
    ax.plot([], [], color="0.55", marker="x", markeredgecolor="tab:red", label="pruned (x: stopped at its rung)")
    if rungs:
        ax.plot([], [], color="0.8", linestyle=":", label="ASHA rungs")
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_xlim(0.8, max_epochs + 0.2)
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    return figure


def survival_counts(epochs_trained: list[int], rungs: list[float], max_epochs: int) -> list[tuple[str, int]]:
    """(stage, trials that reached it): started, each ASHA rung below the budget, and the full budget."""
    stages = [("started", len(epochs_trained))]
    stages += [(f"rung: epoch {r:g}", sum(e >= r for e in epochs_trained)) for r in rungs if r < max_epochs]
    stages.append((f"all {max_epochs} epochs", sum(e >= max_epochs for e in epochs_trained)))
    return stages


def rung_survival(stages: list[tuple[str, int]]) -> Figure:
    figure = Figure(figsize=(7, 0.6 * len(stages) + 1))
    ax = figure.subplots()
    names, counts = zip(*stages)
    bars = ax.barh(range(len(stages)), counts, color="tab:blue")
    ax.bar_label(bars, labels=[f"{c} ({c / max(counts[0], 1):.0%})" for c in counts], padding=3, fontsize=9)
    ax.set_yticks(range(len(stages)), names)
    ax.invert_yaxis()
    ax.set_xlabel("trials")
    ax.set_xlim(0, max(counts[0], 1) * 1.2)
    return figure


def rung_study(study: optuna.Study, rungs: list[float], max_epochs: int) -> tuple[optuna.Study, int]:
    """Every trial that reached the first decision point (an ASHA rung, or the last epoch), each valued at the
    highest such epoch they all reached, as a new in-memory study for Optuna's plots: pruned trials count too.

    Returns (study, that epoch); raises ValueError when fewer than two trials reached it.
    """
    milestones = sorted({int(r) for r in rungs if r < max_epochs} | {max_epochs})
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    trials = [t for t in study.get_trials(deepcopy=False, states=states) if t.intermediate_values]
    reached = [t for t in trials if max(t.intermediate_values) >= milestones[0]]
    if len(reached) < 2:
        raise ValueError(f"needs at least two trials that reached epoch {milestones[0]}; the study has {len(reached)}")
    shared = max(m for m in milestones if all(max(t.intermediate_values) >= m for t in reached))
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created in memory" on the terminal
    try:
        derived = optuna.create_study(directions=study.directions)
    finally:
        optuna.logging.set_verbosity(verbosity)
    derived.add_trials([
        optuna.trial.create_trial(params=t.params, distributions=t.distributions, value=t.intermediate_values[shared])
        for t in reached if shared in t.intermediate_values
    ])
    return derived, shared


def optuna_plot(name: str, study: optuna.Study) -> tuple[Figure, list[str]]:
    """One of optuna.visualization.matplotlib's plots (`param_importances`, `parallel_coordinate`, `slice`).

    Returns the figure and what its drawing warned of (matplotlib's axis warnings when a parameter took a single
    value, say): caught here, for the page to note, never printed. Raises ValueError when the study cannot
    support it (fewer than two complete trials).
    """
    import matplotlib.pyplot as plt  # optuna draws through pyplot

    complete = study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.COMPLETE])
    if len(complete) < 2:
        raise ValueError(f"needs at least two trials with a score; the study has {len(complete)}")
    # rc_context: optuna switches pyplot to its own style; the report's other figures keep theirs.
    with warnings.catch_warnings(record=True) as caught, matplotlib.rc_context():
        warnings.simplefilter("always")
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        axes = np.ravel(getattr(optuna.visualization.matplotlib, f"plot_{name}")(study))
    figure = axes[0].figure
    if len(axes) > 1:  # one panel per parameter (slice): give each room for its tick labels
        figure.set_size_inches(2.6 * len(axes) + 1.5, 3.8)
    plt.close(figure)  # drop pyplot's reference; the Figure itself still renders
    return figure, list(dict.fromkeys(str(w.message) for w in caught))


def ensemble_scores(table: dict) -> Figure:
    """Test score of the top-k vote against k, with the best single trial as the line to beat."""
    figure = Figure(figsize=(7, 4))
    ax = figure.subplots()
    sizes = [row["members"] for row in table["rows"]]
    for method, marker in (("soft", "o"), ("hard", "s")):
        if all(method in row for row in table["rows"]):
            ax.plot(sizes, [row[method] for row in table["rows"]], marker=marker, label=f"{method} vote")
    ax.axhline(table["best_single"], color="0.4", linestyle="--", label="best single trial")
    ax.set_xscale("log")
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.minorticks_off()
    ax.set_xlabel("k: trials in the ensemble (best by validation score)")
    ax.set_ylabel(f"test {table['measure']}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return figure


def confusion_matrix(labels: np.ndarray, probs: np.ndarray, classes: list[str]) -> Figure:
    size = max(5, 0.45 * len(classes) + 2)
    figure = Figure(figsize=(size, size))
    ax = figure.subplots()
    ConfusionMatrixDisplay.from_predictions(
        labels, probs.argmax(axis=1), labels=range(len(classes)), display_labels=classes, ax=ax, colorbar=False,
        cmap="Blues", xticks_rotation="vertical" if len(classes) > 10 else "horizontal",
    )
    return figure


def per_class_errors(labels: np.ndarray, probs: np.ndarray, classes: list[str], threshold=0.5) -> list[dict]:
    """Multi-label: per class, how many test images miss it, how many get it wrongly, its precision, recall and
    F1 at `threshold` (the trial's own: then these are its logged `test_f1_<class>` and the like), and that
    threshold."""
    thresholds = np.broadcast_to(np.asarray(threshold, np.float32), (len(classes),))
    truth, predicted = labels.astype(bool), probs >= thresholds
    measured = metrics.per_class_scores(probs, labels, thresholds)
    return [
        {
            "class": name,
            "images with it": int(truth[:, c].sum()),
            "missed": int((truth[:, c] & ~predicted[:, c]).sum()),
            "wrongly given": int((~truth[:, c] & predicted[:, c]).sum()),
            "precision": float(measured["precision"][c]),
            "recall": float(measured["recall"][c]),
            "F1": float(measured["f1"][c]),
            "threshold": float(thresholds[c]),
        }
        for c, name in enumerate(classes)
    ]


def confused_pairs(labels: np.ndarray, probs: np.ndarray, classes: list[str], threshold=0.5,
                   top: int = 10) -> list[dict]:
    """Multi-label: the label pairs most often confused - in one image, the first label missed while the
    second is wrongly given - most frequent first."""
    truth, predicted = labels.astype(bool), probs >= np.broadcast_to(np.asarray(threshold, np.float32), (len(classes),))
    missed, wrongly = (truth & ~predicted).astype(int), (~truth & predicted).astype(int)
    counts = missed.T @ wrongly  # [a, b]: images where a was missed and b wrongly given
    order = np.argsort(-counts, axis=None, kind="stable")
    pairs = []
    for flat in order[:top]:
        a, b = np.unravel_index(flat, counts.shape)
        if counts[a, b] == 0:
            break
        pairs.append({"missed": classes[a], "given instead": classes[b], "images": int(counts[a, b])})
    return pairs


def rarest_labels(rows: list[dict], count: int = 5) -> list[dict]:
    """The `count` labels with the fewest test images (of per_class_errors' rows), with precision and recall."""
    return [{"class": r["class"], "images with it": r["images with it"], "precision": f"{r['precision']:.3f}",
             "recall": f"{r['recall']:.3f}"} for r in sorted(rows, key=lambda r: r["images with it"])[:count]]


def label_errors(rows: list[dict]) -> Figure:
    """Per label, its false negatives (missed) and false positives (wrongly given) as bars."""
    figure = Figure(figsize=(7, 0.3 * len(rows) + 1.4))
    ax = figure.subplots()
    places = np.arange(len(rows))
    ax.barh(places - 0.2, [r["missed"] for r in rows], height=0.4, color="tab:orange", label="missed (false negatives)")
    ax.barh(places + 0.2, [r["wrongly given"] for r in rows], height=0.4, color="tab:purple",
            label="wrongly given (false positives)")
    ax.set_yticks(places, [r["class"] for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel("test images")
    ax.legend(fontsize=8, loc="lower right")
    return figure


def f1_bars(rows: list[dict]) -> Figure:
    figure = Figure(figsize=(7, 0.3 * len(rows) + 1.2))
    ax = figure.subplots()
    bars = ax.barh(range(len(rows)), [r["F1"] for r in rows], color="tab:blue")
    ax.bar_label(bars, fmt="%.2f", padding=3, fontsize=8)
    ax.set_yticks(range(len(rows)), [r["class"] for r in rows])
    ax.invert_yaxis()
    ax.set_xlim(0, 1.1)
    ax.set_xlabel("test F1")
    return figure


def worst_rows(labels: np.ndarray, probs: np.ndarray, count: int, threshold=0.5) -> np.ndarray:
    """Test rows with the most wrong labels, surest mistakes first; only rows with at least one."""
    if not is_multilabel(labels):
        wrong = (probs.argmax(axis=1) != labels).astype(int)
        sureness = probs.max(axis=1)
    else:
        wrong = ((probs >= threshold) != labels.astype(bool)).sum(axis=1)
        sureness = np.abs(probs - labels).sum(axis=1)
    order = np.lexsort((-sureness, -wrong))
    return order[wrong[order] > 0][:count]


def error_montage(images: np.ndarray, labels: np.ndarray, probs: np.ndarray, classes: list[str],
                  threshold=0.5) -> Figure | None:
    """The test images with the most wrong labels (multi-label: decided at `threshold`, one or per class)."""
    rows = worst_rows(labels, probs, MONTAGE_IMAGES, threshold)
    if not len(rows):
        return None
    multilabel = is_multilabel(labels)
    figure, axes = _image_grid(len(rows), MONTAGE_COLUMNS, (1.6, 2.1))
    for ax, row in zip(axes, rows):
        _show(ax, images[row])
        true, predicted = _names(labels[row], probs[row], classes, multilabel, threshold)
        ax.set_title(f"true: {true}\npred: {predicted}", fontsize=7, color="tab:red")
    figure.tight_layout()
    return figure


def _names(label, probs, classes, multilabel: bool, threshold=0.5) -> tuple[str, str]:
    if not multilabel:
        guess = int(probs.argmax())
        return classes[int(label)], f"{classes[guess]} ({probs[guess]:.2f})"

    def listed(mask):
        return textwrap.shorten(", ".join(c for c, on in zip(classes, mask) if on) or "none", 40)

    return listed(label.astype(bool)), listed(probs >= threshold)


def activation_maps(images: np.ndarray, heat: np.ndarray, titles: list[str], correct: list[bool],
                    columns: int = 6) -> Figure:
    """Each test image with its class activation map over it (red: where the class's evidence is)."""
    figure, axes = _image_grid(len(images), columns, (1.9, 2.2))
    for ax, image, hot, title, right in zip(axes, images, heat, titles, correct):
        _show(ax, image)
        ax.imshow(hot, cmap="jet", alpha=0.45, vmin=0, vmax=1, interpolation="bilinear")
        ax.set_title(textwrap.shorten(title, 34), fontsize=7, color="tab:green" if right else "tab:red")
    figure.tight_layout()
    return figure


def _image_grid(count: int, columns: int, cell_inches: tuple[float, float]) -> tuple[Figure, np.ndarray]:
    """A figure of `count` image cells, `columns` to a line, without axes; its axes in reading order."""
    columns = min(columns, count)
    lines = -(-count // columns)
    figure = Figure(figsize=(cell_inches[0] * columns, cell_inches[1] * lines))
    axes = np.ravel(figure.subplots(lines, columns, squeeze=False))
    for ax in axes:
        ax.axis("off")
    return figure, axes


def _show(ax, image: np.ndarray) -> None:
    """A uint8 (H, W, C) image: grey when it has one channel, its first three channels otherwise."""
    ax.imshow(image[..., 0] if image.shape[-1] == 1 else image[..., :3], cmap="gray", interpolation="nearest")
