"""Live progress of a sweep on the driver: trials done / running / pruned / failed, best so far, time left.

On a terminal one tqdm bar is redrawn in place; elsewhere (CI, a log file) plain lines go out at most every
`LINE_INTERVAL_S` seconds, and at least every `HEARTBEAT_S` seconds while trials run, so a log stays readable.
"""

import sys
import time

from ray import tune
from tqdm import tqdm

from visionsweep.outcome import Outcome, failure_of, failure_reason, trial_error, trial_outcome

LINE_INTERVAL_S = 10.0  # plain output: no two lines closer than this (seconds)
HEARTBEAT_S = 60.0  # plain output: a line at least this often while the sweep runs (seconds)
REDRAW_S = 1.0  # terminal: redraw the bar (its clock) at least this often (seconds)


class SweepProgress(tune.Callback):
    """A Ray Tune callback that counts trial endings and shows them; `close()` prints the final state."""

    def __init__(self, trials: int, metric: str, mode: str, max_epochs: int, stream=None, terminal: bool | None = None):
        self.total = trials
        self.metric = metric
        self.sign = 1 if mode == "max" else -1
        self.max_epochs = max_epochs
        self.stream = stream or sys.stdout
        self.terminal = self.stream.isatty() if terminal is None else terminal
        self.started = time.monotonic()
        self.running: set[str] = set()
        self.epochs: dict[str, int] = {}
        self.ended = {outcome: 0 for outcome in Outcome}
        self.best: tuple[float, str] | None = None  # (score, trial id)
        self.earlier = 0  # trials that ended before this driver started: not part of its pace
        self._bar = None
        self._last_line = self.started
        self._unshown = False  # something changed since the last plain line
        self._closed = False

    # --- Ray Tune hooks (driver side) ---
    def on_trial_start(self, iteration, trials, trial, **info):
        self.running.add(trial.trial_id)
        self._changed()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if failure_of(result):  # the trial's error, not an epoch
            return
        self.epochs[trial.trial_id] = int(result["epoch"])
        self._score(result.get(self.metric), trial.trial_id)

    def count_earlier(self, outcome: Outcome, best: float | None, trial_id: str) -> None:
        """A trial that ended before this driver took the sweep over (`visionsweep resume`)."""
        self.ended[outcome] += 1
        self.earlier += 1
        self._score(best, trial_id)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._end(trial, errored=False)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._end(trial, errored=True)

    def on_step_begin(self, iteration, trials, **info):
        self._show(force=False)

    def on_experiment_end(self, trials, **info):
        self.close()

    # --- state ---
    @property
    def done(self) -> int:
        return sum(self.ended.values())

    def eta_seconds(self) -> float | None:
        """Remaining time at the average pace of the trials done so far; None before the first ends."""
        if self.done <= self.earlier:
            return None
        return (time.monotonic() - self.started) / (self.done - self.earlier) * max(0, self.total - self.done)

    def summary(self) -> str:
        parts = [
            f"{self.ended[Outcome.COMPLETE]} complete",
            f"{self.ended[Outcome.PRUNED]} pruned",
            f"{self.ended[Outcome.FAILED]} failed",
            f"{len(self.running)} running",
        ]
        text = ", ".join(parts)
        if self.best:
            text += f"; best {self.metric} {self.best[0]:.4f} (trial {self.best[1]})"
        return text

    def line(self) -> str:
        eta = self.eta_seconds()
        left = "estimating time left" if eta is None else f"about {_clock(eta)} left"
        elapsed = _clock(time.monotonic() - self.started)
        return f"[sweep] {self.done}/{self.total} trials done: {self.summary()}; {elapsed} elapsed, {left}"

    def close(self) -> None:
        """Shows the final state once (also after an interrupt, from the sweep's `finally`)."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.n = self.done
            self._bar.set_postfix_str(self.summary(), refresh=False)
            self._bar.close()
        else:
            self._print(self.line())

    # --- output ---
    def _end(self, trial, errored: bool) -> None:
        """Counts the trial's outcome; a failed trial gets one line (its whole error is in its MLflow run)."""
        self.running.discard(trial.trial_id)
        error = trial_error(trial, errored)
        epochs = self.epochs.get(trial.trial_id)
        self.ended[trial_outcome(epochs, self.max_epochs, error is not None)] += 1
        if error is not None:
            self._say(f"[sweep] trial {trial.trial_id} failed after {epochs or 0} epoch(s): {failure_reason(error)}")
        self._changed()

    def _score(self, score: float | None, trial_id: str) -> None:
        if score is not None and (self.best is None or self.sign * score > self.sign * self.best[0]):
            self.best = (float(score), trial_id)
            self._changed()

    def _changed(self) -> None:
        self._unshown = True
        self._show(force=self.terminal)

    def _show(self, force: bool) -> None:
        if self._closed:
            return
        now = time.monotonic()
        if self.terminal:
            if self._bar is None:
                self._bar = tqdm(total=self.total, unit="trial", desc="sweep", file=self.stream, dynamic_ncols=True)
            if force or now - self._last_line >= REDRAW_S:
                self._bar.n = self.done
                self._bar.set_postfix_str(self.summary(), refresh=False)
                self._bar.refresh()
                self._last_line = now
        elif (self._unshown and now - self._last_line >= LINE_INTERVAL_S) or now - self._last_line >= HEARTBEAT_S:
            self._print(self.line())

    def _say(self, text: str) -> None:
        """A line of its own, above the bar on a terminal."""
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)
        self._last_line = time.monotonic()
        self._unshown = False

    def __getstate__(self):
        # Tune pickles its callbacks with the experiment state; the bar and the stream stay on this driver.
        return {**self.__dict__, "_bar": None, "stream": None}


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"
