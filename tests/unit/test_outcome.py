import optuna
import pytest

from visionsweep.orchestrator import StudySearch, open_study_storage
from visionsweep.outcome import FAILURE, Diverged, Outcome, check_finite, failure_reason, trial_outcome
from visionsweep.search_spaces import DefineByRun, Distribution


@pytest.mark.parametrize(
    "last_epoch, errored, expected",
    [(10, False, Outcome.COMPLETE), (3, False, Outcome.PRUNED), (3, True, Outcome.FAILED), (None, True, Outcome.FAILED)],
)
def test_trial_outcome(last_epoch, errored, expected):
    assert trial_outcome(last_epoch, max_epochs=10, errored=errored) is expected


def test_a_trial_ended_by_its_own_early_stopping_is_complete_not_pruned():
    assert trial_outcome(3, max_epochs=10, errored=False, early_stopped=True) is Outcome.COMPLETE
    assert trial_outcome(3, max_epochs=10, errored=True, early_stopped=True) is Outcome.FAILED


def searcher_over_one_parameter(max_epochs: int) -> StudySearch:
    return StudySearch(
        space=DefineByRun({"lr": Distribution(uniform=(0.0, 1.0))}),
        metric="val_accuracy",
        mode="max",
        sampler=optuna.samplers.RandomSampler(seed=0),
        max_epochs=max_epochs,
    )


def test_searcher_tells_optuna_pruned_for_stopped_trials():
    """Feeds Ray's searcher interface results by hand (no Ray running): stopped early -> PRUNED."""
    searcher = searcher_over_one_parameter(max_epochs=4)
    cases = [("full", 4, False, False), ("stopped", 2, False, False), ("broken", 1, True, False),
             ("patience", 3, False, True)]
    for trial_id, epochs, error, early_stopped in cases:
        assert searcher.suggest(trial_id) is not None
        for epoch in range(1, epochs + 1):
            searcher.on_trial_result(trial_id, {"val_accuracy": 0.1 * epoch, "epoch": epoch, "training_iteration": epoch})
        last = {"val_accuracy": 0.1 * epochs, "epoch": epochs, "early_stopped": early_stopped}
        searcher.on_trial_complete(trial_id, last, error=error)
    states = [t.state for t in searcher.study.trials]
    assert states == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL,
                      optuna.trial.TrialState.COMPLETE]
    assert searcher.study.trials[1].intermediate_values == {1: 0.1, 2: 0.2}  # TPE still learns from it
    assert searcher.study.best_value == pytest.approx(0.4)


def test_a_trial_stopped_at_its_first_rung_still_reaches_optuna_with_its_score():
    """Ray skips the searcher's on_trial_result for the result on which ASHA says STOP."""
    searcher = searcher_over_one_parameter(max_epochs=4)
    searcher.suggest("stopped")
    searcher.on_trial_complete("stopped", {"val_accuracy": 0.3, "epoch": 1, "training_iteration": 1})
    (trial,) = searcher.study.trials
    assert trial.state is optuna.trial.TrialState.PRUNED and trial.intermediate_values == {1: 0.3}


def test_a_resumed_searcher_tells_no_trial_twice(tmp_path):
    """A driver died after telling a trial's end but before Tune's next searcher snapshot: the study's storage
    holds the truth, and the new driver's searcher, restored from the older snapshot, does not tell it again."""
    storage = lambda: open_study_storage(str(tmp_path / "study.journal"))  # noqa: E731
    first = StudySearch(DefineByRun({"lr": Distribution(uniform=(0.0, 1.0))}), "val_accuracy", "max",
                        optuna.samplers.RandomSampler(seed=0), max_epochs=2, study_name="s", storage=storage())
    first.suggest("told"), first.suggest("running")
    first.save(str(tmp_path / "snapshot.pkl"))
    first.on_trial_complete("told", {"val_accuracy": 0.5, "epoch": 2, "training_iteration": 2})

    second = StudySearch(DefineByRun({"lr": Distribution(uniform=(0.0, 1.0))}), "val_accuracy", "max",
                         optuna.samplers.RandomSampler(seed=0), max_epochs=2, study_name="s", storage=storage())
    second.restore(str(tmp_path / "snapshot.pkl"))
    assert second.suggest("running") == first.suggest("running")  # a restored trial keeps its values
    second.on_trial_complete("told", {"val_accuracy": 0.9, "epoch": 2})
    second.on_trial_complete("running", {"val_accuracy": 0.7, "epoch": 2})
    study = optuna.load_study(study_name="s", storage=storage())
    assert [(t.state, t.value) for t in study.trials] == [(optuna.trial.TrialState.COMPLETE, 0.5),
                                                          (optuna.trial.TrialState.COMPLETE, 0.7)]
def test_a_non_finite_loss_is_a_divergence_that_names_its_epoch_and_value():
    check_finite(3, train_loss=0.5, val_loss=None)
    with pytest.raises(Diverged, match="val_loss is inf at epoch 4") as raised:
        check_finite(4, train_loss=0.5, val_loss=float("inf"))
    assert (raised.value.epoch, raised.value.name) == (4, "val_loss")
    with pytest.raises(Diverged, match="train_loss is nan at epoch 1"):
        check_finite(1, train_loss=float("nan"), val_loss=float("nan"))


def test_the_reason_of_a_failure_is_the_last_line_of_its_trace_without_the_module():
    trace = 'Traceback (most recent call last):\n  File "x.py", line 1\nvisionsweep.outcome.Diverged: train_loss is nan at epoch 2\n'
    assert failure_reason(trace) == "Diverged: train_loss is nan at epoch 2"
    assert failure_reason("ValueError: a.b: c\n") == "ValueError: a.b: c"
    assert failure_reason("") == "failed without an error message"


def test_a_failure_reported_as_a_result_reaches_optuna_as_fail_and_scores_nothing():
    """The trainable reports its error as its last result (outcome.FAILURE) so that Ray does not retry it."""
    searcher = searcher_over_one_parameter(max_epochs=4)
    searcher.suggest("diverged")
    searcher.on_trial_result("diverged", {"val_accuracy": 0.5, "epoch": 1, "training_iteration": 1})
    failure = {FAILURE: "Traceback ...\nDiverged: train_loss is nan at epoch 2", "training_iteration": 2}
    searcher.on_trial_result("diverged", failure)
    searcher.on_trial_complete("diverged", failure)
    (trial,) = searcher.study.trials
    assert trial.state is optuna.trial.TrialState.FAIL and trial.intermediate_values == {1: 0.5}


def test_the_searcher_tells_the_end_of_a_grid_search():
    """GridSampler asks the study to stop when its last point is told: every trial is still told once."""
    searcher = StudySearch(
        DefineByRun({"lr": Distribution(categorical=[0.1, 0.2])}), "val_accuracy", "max",
        optuna.samplers.GridSampler({"lr": [0.1, 0.2]}, seed=0), max_epochs=2,
    )
    for trial_id in ("a", "b"):
        searcher.suggest(trial_id)
    for trial_id in ("a", "b"):
        searcher.on_trial_complete(trial_id, {"val_accuracy": 0.5, "epoch": 2, "training_iteration": 2})
        searcher.on_trial_complete(trial_id, {"val_accuracy": 0.5, "epoch": 2})  # told once, not twice
    assert [t.state for t in searcher.study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
