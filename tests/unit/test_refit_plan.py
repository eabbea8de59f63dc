"""A refit's settings, seeds and searcher: pure logic (the Ray run itself: tests/integration/test_refit.py)."""

from ray.tune.search import Searcher

from visionsweep.config import parse_config
from visionsweep.orchestrator._refit import new_seeds, refit_config
from visionsweep.orchestrator._searcher import GivenConfigs

SWEEP = {"name": "t", "space": {"lr": {"loguniform": [0.01, 0.1]}},
         "search": {"trials": 30, "time_budget_s": 600}, "resources": {"cpu": 2, "concurrent": 3},
         "scheduler": {"kind": "asha", "max_epochs": 12, "grace_period": 4}}


def test_refit_runs_every_trial_to_the_full_budget_on_the_sweeps_resources():
    refit = refit_config(parse_config(SWEEP), trials=6)
    assert (refit.scheduler.kind, refit.scheduler.max_epochs) == ("fifo", 12)
    assert (refit.search.trials, refit.search.time_budget_s) == (6, None)
    assert refit.resources == parse_config(SWEEP).resources
    assert refit_config(parse_config({**SWEEP, "final": {"epochs": 20}}), 6).scheduler.max_epochs == 20
    assert refit_config(parse_config(SWEEP), 6, epochs=2).scheduler.grace_period == 2  # within the budget
    # where the sweep file's own code is looked for (a training function of your own) comes along
    assert refit_config(parse_config(SWEEP, folder="/srv/sweeps"), 6).folder == "/srv/sweeps"


def test_new_seeds_never_repeat_the_trials_own():
    assert new_seeds(7, 3) == [8, 9, 10]
    assert new_seeds(7, 2, repeats=3) == [10, 13]  # the trial trained seeds 7, 8, 9; each refit trains 3 as well


def test_given_configs_are_handed_out_once_each_in_order():
    searcher = GivenConfigs([{"lr": 0.1}, {"lr": 0.2}], "val_accuracy", "max")
    assert searcher.suggest("a") == {"lr": 0.1} and searcher.suggest("b") == {"lr": 0.2}
    assert searcher.suggest("a") == {"lr": 0.1}  # a restored trial asks again: the same configuration
    assert searcher.suggest("c") == Searcher.FINISHED
