import pickle
import warnings

import optuna
from ray import tune
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from visionsweep import search_spaces
from visionsweep.config import SearchConfig, SweepConfig
from visionsweep.outcome import Outcome, trial_outcome


class OptunaSearchWithPruning(OptunaSearch):
    """Ray's OptunaSearch, but trials the scheduler stopped early reach the study as PRUNED.

    Ray tells Optuna every stopped trial as COMPLETE with its early score as the final value, which
    misleads TPE into treating a 1-epoch score like a finished run. Intermediate values are already
    reported per epoch, so PRUNED trials still inform TPE.
    """

    def __init__(self, *args, max_epochs: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_epochs = max_epochs

    def on_trial_result(self, trial_id: str, result: dict):
        if not self._told(trial_id):
            super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        if self._told(trial_id):
            return
        epoch, early_stopped = (result.get("epoch"), result.get("early_stopped")) if result else (None, False)
        outcome = trial_outcome(epoch, self.max_epochs, error, early_stopped)
        if outcome is Outcome.PRUNED and self.metric in result:
            # Ray does not pass the searcher the result on which the scheduler stopped the trial: without
            # it, a trial stopped at its first rung would reach TPE with no score at all.
            reported = self.study._storage.get_trial(self._ot_trials[trial_id]._trial_id).intermediate_values
            if result.get("training_iteration", epoch) not in reported:
                super().on_trial_result(trial_id, {"training_iteration": epoch, **result})
        if outcome is not Outcome.COMPLETE:
            result = None  # OptunaSearch then tells FAIL (error) or PRUNED (no error)
        super().on_trial_complete(trial_id, result, error)

    def _told(self, trial_id: str) -> bool:
        """Already finished in a persistent study: a driver died after telling it, and Ray re-runs the trial's end."""
        ot_trial = self._ot_trials.get(trial_id)
        return ot_trial is not None and self.study._storage.get_trial(ot_trial._trial_id).state.is_finished()

    @property
    def study(self) -> optuna.Study:
        return self._ot_study


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
        # Constant liar keeps parallel workers from sampling the same region (STACK.md); group keeps
        # multivariate TPE multivariate when conditions and repeats change which parameters a trial has.
        # Without them every trial has every parameter, and grouping only costs time (about 2 ms of a 7 ms
        # ask at 300 trials, bench/ask_latency.py); a bare SearchConfig does not say, so it groups.
        varying = not isinstance(config, SweepConfig) or any(d.when or d.repeat for d in config.space.values())
        return optuna.samplers.TPESampler(seed=search.seed, multivariate=True, group=varying,
                                          constant_liar=concurrent > 1)


class CoordinateSearch(Searcher):
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
        value = result[self.metric]
        best = self.best.get(trial_id)
        self.best[trial_id] = value if best is None else (max if self.mode == "max" else min)(best, value)

    # Ray saves searchers with the experiment state (Tuner.restore); the walk is plain data.
    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as file:
            pickle.dump(self.__dict__, file)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as file:
            self.__dict__.update(pickle.load(file))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self.configs:
            self.walk.tell(self.configs.pop(trial_id), None if error else self.best.pop(trial_id, None))


class TellStoppedTrials(tune.Callback):
    """When the time budget (search.time_budget_s) runs out, Tune stops the running trials without a hook,
    for the searcher as for callbacks. At the experiment's end this tells the searcher each such trial's last
    result, as a scheduler's stop is told (Optuna: PRUNED, with the scores so far): the trials that ran in
    this session and were given no end."""

    def __init__(self, searcher: Searcher):
        self.searcher = searcher
        self.running: set[str] = set()

    def on_trial_start(self, iteration, trials, trial, **info):
        self.running.add(trial.trial_id)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.running.discard(trial.trial_id)

    on_trial_error = on_trial_complete

    def on_experiment_end(self, trials, **info):
        for trial in trials:
            if trial.trial_id in self.running and trial.status == trial.TERMINATED and trial.last_result:
                self.searcher.on_trial_complete(trial.trial_id, trial.last_result)

    def __getstate__(self):
        # Tune pickles its callbacks with the experiment state, and saves the searcher itself.
        return {"searcher": None, "running": set()}
