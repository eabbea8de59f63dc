import pickle
import warnings
from collections.abc import Callable
from typing import Any

import optuna
from ray import tune
from ray.tune.search import Searcher

from visionsweep import search_spaces
from visionsweep.config import SearchConfig, SweepConfig
from visionsweep.outcome import Outcome, failure_of, trial_outcome


class _PicklingSearcher(Searcher):
    """Ray saves a searcher with the experiment state and restores it on resume: these keep all of its state."""

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as file:
            pickle.dump(self.__dict__, file)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as file:
            self.__dict__.update(pickle.load(file))


class StudySearch(_PicklingSearcher):
    """Ray Tune's searcher over an Optuna study, by Optuna's ask-and-tell interface.

    Each new Ray trial asks the study for an Optuna trial and runs the define-by-run `space` on it; every
    result is reported as an intermediate value; the end is told with the trial's true outcome. Trials
    the scheduler stopped early are told PRUNED (Ray's own OptunaSearch tells them COMPLETE with their
    early score as the final value, which misleads TPE into treating a 1-epoch score like a finished run);
    their intermediate values still inform TPE.

    `storage` None keeps the study in memory; it then comes back on resume from Tune's searcher snapshot.
    """

    def __init__(
        self, space: Callable[[optuna.Trial], dict[str, Any]], metric: str, mode: str,
        sampler: optuna.samplers.BaseSampler, max_epochs: int, study_name: str | None = None,
        storage: optuna.storages.BaseStorage | None = None,
    ):
        super().__init__(metric=metric, mode=mode)
        self.space = space
        self.max_epochs = max_epochs
        # No pruner: the scheduler (ASHA) decides what stops; the study is told what it decided.
        self.study = optuna.create_study(
            storage=storage, sampler=sampler, pruner=optuna.pruners.NopPruner(), study_name=study_name,
            direction="maximize" if mode == "max" else "minimize", load_if_exists=True,
        )
        self.trials: dict[str, optuna.Trial] = {}  # Ray trial id -> the Optuna trial asked for it
        self.steps: dict[str, set[int]] = {}  # Ray trial id -> the steps reported to Optuna
        self.told: set[str] = set()  # Ray trial ids whose end the study has been told

    def suggest(self, trial_id: str) -> dict[str, Any]:
        if trial_id not in self.trials:
            self.trials[trial_id] = self.study.ask()
            self.steps[trial_id] = set()
        return self.space(self.trials[trial_id])  # asked again (a restored trial): the same values

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self.told or trial_id not in self.trials:  # not asked here: proposed after the last snapshot
            return
        step = result.get("training_iteration", result.get("epoch"))
        if step is not None and step not in self.steps[trial_id] and self.metric in result:
            self.trials[trial_id].report(result[self.metric], step)
            self.steps[trial_id].add(step)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self.told or trial_id not in self.trials:
            return
        error = error or bool(failure_of(result))  # it reported its error (outcome.FAILURE): FAIL
        epoch, early_stopped = (result.get("epoch"), result.get("early_stopped")) if result else (None, False)
        outcome = trial_outcome(epoch, self.max_epochs, error, early_stopped)
        if outcome is not Outcome.FAILED and result:
            # Ray does not pass the searcher the result on which the scheduler stopped the trial: without
            # it, a trial stopped at its first rung would reach TPE with no score at all.
            self.on_trial_result(trial_id, result)
        if outcome is Outcome.COMPLETE and result and self.metric in result:
            self._tell(trial_id, result[self.metric])  # a NaN score is told FAIL by Optuna, with a warning
        elif outcome is Outcome.FAILED:
            self._tell(trial_id, state=optuna.trial.TrialState.FAIL)
        else:  # its value is its last intermediate value
            self._tell(trial_id, state=optuna.trial.TrialState.PRUNED)

    def _tell(self, trial_id: str, value: float | None = None, state: optuna.trial.TrialState | None = None) -> None:
        self.told.add(trial_id)
        try:
            self.study.tell(self.trials[trial_id], value, state=state)
        except RuntimeError as error:
            # GridSampler calls study.stop() once its grid is used up, which Optuna allows only inside
            # study.optimize(). The tell is already stored (Optuna records the state before that error
            # leaves), and the grid's end reaches Ray through search.trials.
            if "Study.stop" not in str(error):
                raise

    # A study in a storage is reopened from it when unpickled, so what it holds there is the truth: a driver
    # that died after telling a trial's end must not tell it again.
    def restore(self, checkpoint_path: str) -> None:
        super().restore(checkpoint_path)
        finished = {t.number for t in self.study.get_trials(deepcopy=False) if t.state.is_finished()}
        self.told |= {trial_id for trial_id, trial in self.trials.items() if trial.number in finished}


def make_sampler(config: SweepConfig | SearchConfig, concurrent: int) -> optuna.samplers.BaseSampler:
    search = config.search if isinstance(config, SweepConfig) else config
    if search.sampler == "random":
        return optuna.samplers.RandomSampler(seed=search.seed)
    if search.sampler == "grid":  # conditional and repeated parameters make some grid points the same config
        return optuna.samplers.GridSampler(search_spaces.grid(config.space, config.fixed_values()), seed=search.seed)
    if search.sampler == "cmaes":  # categorical parameters fall back to random sampling
        return optuna.samplers.CmaEsSampler(seed=search.seed, warn_independent_sampling=False)
    with warnings.catch_warnings():  # QMC and TPE's group and constant_liar options: "experimental" for years
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if search.sampler == "qmc":
            return optuna.samplers.QMCSampler(seed=search.seed, scramble=True, warn_independent_sampling=False)
        # Constant liar keeps parallel workers from sampling the same region (docs/stack.md); group keeps
        # multivariate TPE multivariate when conditions and repeats change which parameters a trial has.
        # Without them every trial has every parameter, and grouping only costs time (about 2 ms of a 7 ms
        # ask at 300 trials, bench/ask_latency.py); a bare SearchConfig does not say, so it groups.
        varying = not isinstance(config, SweepConfig) or any(d.when or d.repeat for d in config.space.values())
        return optuna.samplers.TPESampler(seed=search.seed, multivariate=True, group=varying,
                                          constant_liar=concurrent > 1)


class CoordinateSearch(_PicklingSearcher):
    """Ray's side of a `CoordinateWalk`: a trial's score is its best reported value of the metric."""

    def __init__(self, walk: search_spaces.CoordinateWalk, metric: str, mode: str):
        super().__init__(metric=metric, mode=mode)
        self.walk = walk
        self.configs: dict[str, dict] = {}
        self.best: dict[str, float] = {}

    def suggest(self, trial_id: str):
        config = self.walk.propose()
        if config is None:
            return Searcher.FINISHED if self.walk.done else None  # None: ask again once running trials end
        self.configs[trial_id] = config
        return dict(config)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if failure_of(result):
            return
        value = result[self.metric]
        best = self.best.get(trial_id)
        self.best[trial_id] = value if best is None else (max if self.mode == "max" else min)(best, value)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self.configs:
            failed = error or failure_of(result)
            self.walk.tell(self.configs.pop(trial_id), None if failed else self.best.pop(trial_id, None))


class GivenConfigs(_PicklingSearcher):
    """Ray's side of a fixed list of trial configurations, each run once, in order (a refit's)."""

    def __init__(self, configs: list[dict[str, Any]], metric: str, mode: str):
        super().__init__(metric=metric, mode=mode)
        self.configs = [dict(config) for config in configs]
        self.given: dict[str, dict] = {}  # Ray trial id -> its configuration

    def suggest(self, trial_id: str):
        if trial_id not in self.given:
            if len(self.given) == len(self.configs):
                return Searcher.FINISHED
            self.given[trial_id] = self.configs[len(self.given)]
        return dict(self.given[trial_id])

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        pass  # nothing is learned from a given configuration's score


class TellStoppedTrials(tune.Callback):
    """When the time budget (search.time_budget_s) runs out, Tune stops the running trials without a hook,
    for the searcher as for callbacks. At the experiment's end this tells the searcher each such trial's last
    result, as a scheduler's stop is told (Optuna: PRUNED, with the scores so far): the trials that ran in
    this session and were given no end. Trials cut short by Ctrl-C (`interrupt.interrupted`) are not over:
    a resumed sweep continues them, and tells their end then."""

    def __init__(self, searcher: Searcher, interrupt=None):
        self.searcher = searcher
        self.interrupt = interrupt
        self.running: set[str] = set()

    def on_trial_start(self, iteration, trials, trial, **info):
        self.running.add(trial.trial_id)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.running.discard(trial.trial_id)

    on_trial_error = on_trial_complete

    def on_experiment_end(self, trials, **info):
        if getattr(self.interrupt, "interrupted", False):
            return
        for trial in trials:
            if trial.trial_id in self.running and trial.status == trial.TERMINATED and trial.last_result:
                self.searcher.on_trial_complete(trial.trial_id, trial.last_result)

    def __getstate__(self):
        # Tune pickles its callbacks with the experiment state, and saves the searcher itself.
        return {"searcher": None, "interrupt": None, "running": set()}
