"""The report's pure parts: ASHA rungs, survival, error ranking, figures and the page, on made-up data."""

import re

import numpy as np
import optuna
import pytest
from ray.tune.schedulers import ASHAScheduler

from visionsweep import metrics
from visionsweep.config import parse_config
from visionsweep.report import SweepFacts, asha_rungs, render
from visionsweep.report._collect import Trial
from visionsweep.report import _figures


@pytest.mark.parametrize("max_epochs, grace, factor", [(12, 2, 3), (4, 1, 2), (10, 1, 3), (20, 1, 2.5), (3, 3, 2)])
def test_rungs_are_the_milestones_ray_asha_uses(max_epochs, grace, factor):
    config = parse_config({"name": "x", "scheduler": {"max_epochs": max_epochs, "grace_period": grace,
                                                      "reduction_factor": factor}})
    ray_asha = ASHAScheduler(time_attr="epoch", max_t=max_epochs, grace_period=grace, reduction_factor=factor)
    assert asha_rungs(config.scheduler) == sorted(milestone for milestone, _ in ray_asha._brackets[0]._rungs)


def test_fifo_has_no_rungs():
    assert asha_rungs(parse_config({"name": "x", "scheduler": {"kind": "fifo"}}).scheduler) == []


def test_survival_counts_trials_reaching_each_rung():
    # 0: failed before its first epoch
    assert _figures.survival_counts([0, 1, 1, 2, 2, 4, 4], [1, 2, 4], 4) == [
        ("started", 7), ("rung: epoch 1", 6), ("rung: epoch 2", 4), ("all 4 epochs", 2)]


def test_worst_rows_most_wrong_labels_then_surest():
    labels = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 1, 0]])
    probs = np.array([[0.9, 0.1, 0.1], [0.1, 0.2, 0.9], [0.1, 0.6, 0.4], [0.2, 0.9, 0.3]])
    # row 1: three wrong labels; row 2: two; rows 0 and 3: none
    assert _figures.worst_rows(labels, probs, 10).tolist() == [1, 2]
    single = np.array([0, 1, 2, 2])
    sure = np.array([[0.9, 0.1, 0], [0.8, 0.1, 0.1], [0.2, 0.6, 0.2], [0.1, 0.1, 0.8]])
    assert _figures.worst_rows(single, sure, 10).tolist() == [1, 2]  # 0.8 sure before 0.6 sure
    assert _figures.worst_rows(single, sure, 1).tolist() == [1]


def test_per_class_errors_count_missed_and_wrongly_given():
    labels = np.array([[1, 0], [1, 1], [0, 1]])
    probs = np.array([[0.9, 0.8], [0.2, 0.7], [0.1, 0.9]])
    rows = _figures.per_class_errors(labels, probs, ["cat", "dog"])
    assert [(r["class"], r["images with it"], r["missed"], r["wrongly given"]) for r in rows] == [
        ("cat", 2, 1, 0), ("dog", 2, 0, 1)]
    assert rows[0]["F1"] == pytest.approx(2 / 3) and rows[1]["F1"] == pytest.approx(0.8)


def test_learning_curves_mark_each_pruned_trial_where_it_stopped():
    trials = [
        Trial("best", "r0", "complete", {}, [(1, 0.5), (2, 0.7), (3, 0.8), (4, 0.9)], 0.9),
        Trial("p1", "r1", "pruned", {}, [(1, 0.3)], 0.3),
        Trial("p2", "r2", "pruned", {}, [(1, 0.6), (2, 0.65)], 0.65),
        Trial("f", "r3", "failed", {}, [], None),
    ]
    ax = _figures.learning_curves(trials, "val_accuracy", [1, 2, 4], 4).axes[0]
    marks = [line.get_xydata().tolist() for line in ax.lines if line.get_marker() == "x" and len(line.get_xdata())]
    assert sorted(marks) == [[[1.0, 0.3]], [[2.0, 0.65]]]
    assert [line.get_xdata()[0] for line in ax.lines if line.get_linestyle() == ":" and len(line.get_xdata())] == [1, 2]


def make_study(complete: int, pruned: int) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))

    def objective(trial):
        lr = trial.suggest_float("lr", 1e-3, 0.3, log=True)
        trial.suggest_categorical("channels", [8, 16])
        trial.report(lr, 1)
        if trial.number >= complete:
            raise optuna.TrialPruned()
        return lr

    study.optimize(objective, n_trials=complete + pruned)
    return study


def make_facts(multilabel: bool, study: optuna.Study | None, ensemble: dict | None) -> SweepFacts:
    rng = np.random.default_rng(0)
    classes = ["a", "b", "c"]
    labels = rng.integers(0, 2, (30, 3)) if multilabel else rng.integers(0, 3, 30)
    probs = rng.random((30, 3)).astype(np.float32)
    trials = [Trial(f"t{i}", f"r{i}", "complete" if i < 2 else "pruned", {"lr": str(0.1 / (i + 1)), "channels": "8"},
                    [(e, 0.5 + 0.1 * e - 0.05 * i) for e in range(1, (4 if i < 2 else 2) + 1)], 0.9 - 0.05 * i)
              for i in range(5)]
    return SweepFacts(
        run_id="0123456789abcdef", experiment="demo <x>",
        config=parse_config({"name": "demo", "scheduler": {"max_epochs": 4, "reduction_factor": 2}}),
        metric="val_accuracy", mode="max", summary={"trials_complete": 2, "trials_pruned": 3, "trials_failed": 0},
        trials=trials, study=study, ensemble=ensemble, classes=classes, test_labels=labels, best_test_probs=probs,
        test_images=rng.integers(0, 256, (30, 8, 8, 1), dtype=np.uint8),
    )


ENSEMBLE = {"measure": "accuracy", "best_single": 0.9,
            "rows": [{"k": 1, "members": 1, "soft": 0.9, "hard": 0.9}, {"k": 3, "members": 3, "soft": 0.93, "hard": 0.91}]}


def images(page: str) -> list[str]:
    return re.findall(r'<img alt="" src="data:image/png;base64,[A-Za-z0-9+/=]+">', page)


def test_multiclass_page_has_every_section_inline():
    page = render(make_facts(False, make_study(4, 3), ENSEMBLE))
    headings = re.findall(r"<h2>(.*?)</h2>", page)
    assert headings == ["Sweep", "Best trials", "Learning curves", "ASHA rung survival", "Parameter importances",
                        "Parallel coordinates", "Slice plots", "Ensemble score against k", "Confusion matrix",
                        "Error montage", "Class activation maps"]
    assert len(images(page)) == 8  # every section but the two tables and the maps (no model here)
    assert "demo &lt;x&gt;" in page and "<x>" not in page  # names are escaped
    assert "channels=8, lr=0.1</td>" in page
    # pruned trials count: all 7 reached the first rung (epoch 1), none the second
    assert page.count("Score: val_accuracy at epoch 1 (an ASHA rung), the highest epoch all of them reached, over "
                      "the 7 trials that reached it, pruned ones included.") == 3


def test_multilabel_page_has_wrong_labels_table_and_f1_bars():
    facts = make_facts(True, make_study(4, 0), ENSEMBLE)
    facts.best_thresholds = np.full(3, 0.5, np.float32)
    page = render(facts)
    headings = re.findall(r"<h2>(.*?)</h2>", page)
    assert headings[-6:] == ["Wrong labels per class", "Labels confused", "Rarest labels", "Per-class F1",
                             "Error montage", "Class activation maps"]
    assert "Confusion matrix" not in headings
    assert "<th>missed</th><th>wrongly given</th><th>precision</th><th>recall</th>" in page
    assert "<th>missed</th><th>given instead</th><th>images</th>" in page


def test_page_says_what_it_cannot_show():
    page = render(make_facts(False, make_study(1, 0), None))
    assert page.count("not drawn: needs at least two trials that reached epoch 1; the study has 1") == 3
    assert "no ensemble run yet: visionsweep ensemble --experiment demo &lt;x&gt;" in page
    assert "no Optuna study stored" in render(make_facts(False, None, None))


def test_multilabel_page_decides_with_the_trials_own_thresholds_and_names_lost_labels():
    facts = make_facts(True, make_study(4, 0), {**ENSEMBLE, "final": {"never_predicted": ["a"]}})
    facts.best_test_probs[:, 2] *= 0.1  # class c: probabilities below 0.1, its tuned threshold 0.05
    facts.best_thresholds = np.array([0.5, 0.99, 0.05], np.float32)  # class b: nothing reaches 0.99
    page = render(facts)
    logged = metrics.multilabel_scores(facts.best_test_probs, facts.test_labels, "test_", facts.best_thresholds, facts.classes)
    for name, threshold in zip(facts.classes, facts.best_thresholds):
        cells = [f"{logged[f'test_{m}_{name}']:.4f}" for m in ("precision", "recall", "f1")] + [f"{threshold:.4f}"]
        assert "".join(f'<td class="">{c}</td>' for c in cells) in page  # the logged figures, to the digit shown
    assert logged["test_f1_b"] == 0.0 and logged["test_f1_c"] > 0
    assert "<th>never predicted by the best trial</th><td>b</td>" in page
    assert "<th>never predicted by the final ensemble</th><td>a</td>" in page


def test_never_predicted_and_stored_thresholds():
    probs = np.array([[0.9, 0.01, 0.2], [0.8, 0.02, 0.7]], np.float32)
    assert metrics.never_predicted(probs, ["a", "b", "c"], 0.5) == ["b"]
    assert metrics.never_predicted(probs, ["a", "b", "c"], [0.5, 0.015, 0.5]) == []
    assert metrics.never_predicted(probs, ["a", "b", "c"]) == ["b", "c"]  # multi-class: nobody's argmax
    assert metrics.decision_thresholds({"thresholds": np.array([0.1, 0.2])}, 2).tolist() == pytest.approx([0.1, 0.2])
    assert metrics.decision_thresholds({}, 3).tolist() == [0.5, 0.5, 0.5]


def test_rung_study_values_every_trial_at_the_highest_epoch_all_reached():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    for number, epochs in enumerate([4, 4, 2, 2, 1]):  # two complete, two pruned at 2, one pruned at 1
        trial = study.ask({"lr": optuna.distributions.FloatDistribution(0.001, 1.0, log=True)})
        for epoch in range(1, epochs + 1):
            trial.report(number + epoch / 10, epoch)
        study.tell(trial, number + epochs / 10 if epochs == 4 else None,
                   state=None if epochs == 4 else optuna.trial.TrialState.PRUNED)
    derived, epoch = _figures.rung_study(study, [1, 2, 4], 4)
    assert epoch == 1 and [t.value for t in derived.trials] == [0.1, 1.1, 2.1, 3.1, 4.1]
    without_the_first_rung_leaver, epoch = _figures.rung_study(study, [2, 4], 4)
    assert epoch == 2 and len(without_the_first_rung_leaver.trials) == 4  # the trial that stopped at 1 never got to 2
    fifo, epoch = _figures.rung_study(study, [], 4)
    assert epoch == 4 and [t.value for t in fifo.trials] == [0.4, 1.4]


def test_degenerate_optuna_plots_warn_on_the_page_not_the_terminal(recwarn):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")

    def objective(trial):
        trial.suggest_float("lr", 0.1, 0.1)  # one value: matplotlib warns of identical axis limits
        value = trial.suggest_float("dropout", 0.0, 0.5)
        trial.report(value, 1)
        return value

    study.optimize(objective, n_trials=4)
    _, warned = _figures.optuna_plot("slice", study)
    assert any("identical low and high xlims" in w for w in warned)
    assert not [w for w in recwarn if "lims" in str(w.message)]
    facts = make_facts(False, study, None)
    facts.config = parse_config({"name": "demo", "scheduler": {"kind": "fifo", "max_epochs": 1}})
    assert "degenerate plot: Attempting to set identical low and high" in render(facts)


def test_confused_pairs_and_rarest_labels():
    labels = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    probs = np.array([[0.1, 0.9, 0.0], [0.2, 0.8, 0.7], [0.0, 0.9, 0.0], [0.0, 0.0, 0.9]])
    pairs = _figures.confused_pairs(labels, probs, ["a", "b", "c"])
    assert pairs == [{"missed": "a", "given instead": "b", "images": 2}, {"missed": "a", "given instead": "c", "images": 1}]
    rows = _figures.per_class_errors(labels, probs, ["a", "b", "c"])
    rare = _figures.rarest_labels(rows, 2)
    assert [r["class"] for r in rare] == ["b", "c"]
    assert rare[0]["precision"] == "0.333" and rare[0]["recall"] == "1.000"
