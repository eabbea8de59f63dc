"""One self-contained HTML page: the figures embedded as PNG data URIs, no scripts, no outside files."""

import base64
import io
import time
from html import escape

from matplotlib.figure import Figure

from visionsweep import metrics
from visionsweep.report import _figures
from visionsweep.report._collect import SweepFacts, asha_rungs

TOP_TRIALS = 10  # rows in the table of best trials

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.9em; margin: 0.5em 0; }
td, th { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; } p.why { color: #555; } .note { color: #a40; }
"""


def render(facts: SweepFacts) -> str:
    config = facts.config
    rungs = asha_rungs(config.scheduler)
    sections = [
        ("Sweep", _summary(facts)),
        ("Best trials", _table(_top_rows(facts))),
        ("Learning curves", _why(
            f"{facts.metric} per epoch of every trial. Grey lines were stopped by ASHA; each ends in a red x at the "
            "rung where it fell behind.") + _image(_figures.learning_curves(facts.trials, facts.metric, rungs,
                                                                              config.scheduler.max_epochs))),
        ("ASHA rung survival", _survival(facts, rungs)),
        *_optuna_sections(facts),
        ("Ensemble score against k", _ensemble(facts)),
        *_error_sections(facts),
        ("Class activation maps", _activation_maps(facts)),
    ]
    notes = "".join(f'<p class="note">{escape(n)}</p>' for n in facts.notes)
    body = "".join(f"<h2>{escape(title)}</h2>\n{html}\n" for title, html in sections)
    title = f"Sweep report: {facts.experiment}"
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{STYLE}</style></head><body>\n<h1>{escape(title)}</h1>\n{notes}{body}"
        f"<p class=\"why\">Generated {time.strftime('%Y-%m-%d %H:%M:%S %Z')} from MLflow run {escape(facts.run_id)}."
        "</p></body></html>\n"
    )


def _summary(facts: SweepFacts) -> str:
    config, summary = facts.config, facts.summary
    rows = [
        ("experiment", facts.experiment),
        ("sweep run", facts.run_id),
        ("data / model", f"{config.data.dataset} / {' | '.join(config.model_choices)}"),
        ("search", f"{config.search.sampler}, {config.search.trials} trials, {facts.metric} ({facts.mode})"),
        ("scheduler", f"{config.scheduler.kind}, up to {config.scheduler.max_epochs} epochs"),
        ("trials", ", ".join(
            f"{int(summary[k])} {k.removeprefix('trials_')}" for k in sorted(summary) if k.startswith("trials_"))),
    ]
    if "wall_seconds" in summary:
        rows.append(("wall time", f"{summary['wall_seconds']:.0f} s"))
    best = facts.best_trial
    if best:
        tests = ", ".join(f"{k} {v:.4f}" for k, v in summary.items() if k.startswith("test_"))
        rows.append(("best trial", f"{best.name}: {facts.metric} {best.best:.4f}" + (f"; {tests}" if tests else "")))
        rows.append(("its parameters", ", ".join(f"{k}={_short(v)}" for k, v in sorted(best.params.items()))))
    rows += _never_predicted_rows(facts)
    return "<table>" + "".join(f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>" for k, v in rows) + "</table>"


def _never_predicted_rows(facts: SweepFacts) -> list[tuple[str, str]]:
    """The classes the best trial, and the latest final ensemble, give no test row: their F1 is 0."""
    rows = []
    if facts.best_trial and facts.best_test_probs is not None:
        lost = metrics.never_predicted(facts.best_test_probs, facts.classes, facts.best_thresholds)
        rows.append(("never predicted by the best trial", ", ".join(lost) or "none: every class is given to some "
                                                                                "test image"))
    lost = (facts.ensemble or {}).get("final", {}).get("never_predicted")  # None from an older ensemble run
    if lost is not None:
        rows.append(("never predicted by the final ensemble", ", ".join(lost) or "none"))
    return rows


def _top_rows(facts: SweepFacts) -> list[dict]:
    names = sorted({name for t in facts.trials for name in t.params})
    return [
        {"trial": t.name, "outcome": t.outcome, "epochs": len(t.curve),
         f"best {facts.metric}": "-" if t.best is None else f"{t.best:.4f}",
         **{n: _short(t.params.get(n, "")) for n in names}}
        for t in facts.trials[:TOP_TRIALS]
    ]


def _survival(facts: SweepFacts, rungs: list[float]) -> str:
    if not rungs:
        return _why("This sweep used the FIFO scheduler: every trial ran every epoch, there are no rungs.")
    stages = _figures.survival_counts([len(t.curve) for t in facts.trials], rungs, facts.config.scheduler.max_epochs)
    scheduler = facts.config.scheduler
    return _why(
        f"Trials that trained up to each ASHA rung (grace period {scheduler.grace_period} epochs, reduction factor "
        f"{scheduler.reduction_factor:g}: about 1 in {scheduler.reduction_factor:g} goes on past each rung)."
    ) + _image(_figures.rung_survival(stages))


def _optuna_sections(facts: SweepFacts) -> list[tuple[str, str]]:
    plots = [
        ("Parameter importances", "param_importances",
         "How much of the variation in the score each parameter explains (Optuna's importance evaluator)."),
        ("Parallel coordinates", "parallel_coordinate", "Every trial as one line through its parameter values."),
        ("Slice plots", "slice", "The score against each parameter, one dot per trial."),
    ]
    if facts.study is None:
        return [(title, _note("no Optuna study stored with this sweep")) for title, _, _ in plots]
    scheduler = facts.config.scheduler
    try:
        study, epoch = _figures.rung_study(facts.study, asha_rungs(scheduler), scheduler.max_epochs)
    except ValueError as err:
        return [(title, _note(f"not drawn: {err}")) for title, _, _ in plots]
    point = "the last epoch" if epoch == scheduler.max_epochs else "an ASHA rung"
    scope = (f" Score: {facts.metric} at epoch {epoch} ({point}), the highest epoch all of them reached, over the "
             f"{len(study.trials)} trials that reached it, pruned ones included.")
    sections = []
    for title, name, why in plots:
        try:
            figure, warned = _figures.optuna_plot(name, study)
        except (ValueError, RuntimeError) as err:
            sections.append((title, _note(f"not drawn: {err}")))
            continue
        degenerate = _note("degenerate plot: " + "; ".join(warned)) if warned else ""
        sections.append((title, _why(why + scope) + degenerate + _image(figure)))
    return sections


def _ensemble(facts: SweepFacts) -> str:
    if facts.ensemble is None:
        return _note(f"no ensemble run yet: visionsweep ensemble --experiment {facts.experiment} --sweep {facts.run_id}")
    return _why("Test score of voting over the k best trials (by validation score).") + _image(
        _figures.ensemble_scores(facts.ensemble))


def _error_sections(facts: SweepFacts) -> list[tuple[str, str]]:
    best, probs, labels, classes = facts.best_trial, facts.best_test_probs, facts.test_labels, facts.classes
    if best is None or probs is None:
        return []
    scope = f"Test rows, predictions of the best trial ({best.name})."
    thresholds = facts.best_thresholds
    if facts.multilabel:
        scope += " Each class is decided at the trial's own threshold, the one its logged test metrics use."
        rows = _figures.per_class_errors(labels, probs, classes, thresholds)
        shown = [{**r, **{k: f"{r[k]:.4f}" for k in ("precision", "recall", "F1", "threshold")}} for r in rows]
        pairs = _figures.confused_pairs(labels, probs, classes, thresholds)
        sections = [
            ("Wrong labels per class", _why(scope + " Missed (false negatives): the class is in the image but not "
                                             "predicted; wrongly given (false positives): predicted but not there.")
             + _table(shown) + _image(_figures.label_errors(rows))),
            ("Labels confused", _why(scope + " In one image, the first label missed while the second was wrongly "
                                     "given: the pairs the model mixes up most.")
             + (_table(pairs) if pairs else _note("no image had one label missed and another wrongly given"))),
            ("Rarest labels", _why(scope + " The labels with the fewest test images, where scores are least sure.")
             + _table(_figures.rarest_labels(rows))),
            ("Per-class F1", _image(_figures.f1_bars(rows))),
        ]
    else:
        sections = [("Confusion matrix", _why(scope + " Rows: true class; columns: predicted.") + _image(
            _figures.confusion_matrix(labels, probs, classes)))]
    if facts.test_images is not None:
        montage = _figures.error_montage(facts.test_images, labels, probs, classes,
                                         0.5 if thresholds is None else thresholds)
        html = _why(scope + " The images with the most wrong labels, surest mistakes first.") + (
            _image(montage) if montage else _note("the best trial got every test image right"))
        sections.append(("Error montage", html))
    return sections


def _activation_maps(facts: SweepFacts) -> str:
    explained = facts.explanation
    if explained is None:
        return _note("no class activation maps: see the notes at the top")
    per = "label" if facts.multilabel else "class"
    mistake = ("the label missed or wrongly given that the model was surest of (the map for that label)"
               if facts.multilabel else "its surest mistake (the map for the class the model said instead)")
    return _why(
        f"Grad-CAM of {facts.explained_why}, at layer {explained.layer}: for each {per}, the test image it got "
        f"right with the most confidence (green title) and {mistake} (red title). Red in the map is where the "
        "evidence for that class lies. Also logged to that trial's run as gradcam/<class>.png."
    ) + _image(explained.figure())


def _image(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return f'<img alt="" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def _table(rows: list[dict]) -> str:
    if not rows:
        return _note("no trials")
    head = "".join(f"<th>{escape(k)}</th>" for k in rows[0])
    body = "".join(
        "<tr>" + "".join(
            f'<td class="{"n" if isinstance(v, (int, float)) else ""}">{escape(str(v))}</td>' for v in row.values()
        ) + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _short(value: str) -> str:
    """A long float param as MLflow stores it ('0.04729807031') in 4 significant digits."""
    try:
        return f"{float(value):.4g}" if "." in value or "e" in value.lower() else value
    except ValueError:
        return value


def _why(text: str) -> str:
    return f'<p class="why">{escape(text)}</p>'


def _note(text: str) -> str:
    return f'<p class="note">{escape(text)}</p>'
