"""Ctrl-C during a sweep: the sweep ends KILLED within seconds, its cut-short trials `killed`, all resumable.

Tune's own SIGINT handler ends the experiment gracefully (its state saved with the running trials still
running, so that `Tuner.restore` continues them) but then returns as if the sweep had finished: the sweep
looked FINISHED and its running trials pruned or complete. So the sweep takes SIGINT itself (Tune's
handler is turned off in RAY_ENVIRONMENT), remembers it, and asks Tune for the same graceful end through
SIGUSR1, the signal Tune always listens to for it.
"""

import contextlib
import os
import signal
import sys
import threading


class Interrupt:
    """`interrupted` once the user pressed Ctrl-C; a second Ctrl-C raises KeyboardInterrupt at once."""

    def __init__(self):
        self.interrupted = False

    @contextlib.contextmanager
    def catching(self):
        """Takes SIGINT while inside (from the main thread only: elsewhere signals cannot be caught)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = signal.getsignal(signal.SIGINT)
        signal.signal(signal.SIGINT, self._on_sigint)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)

    def _on_sigint(self, signum, frame):
        tuning = signal.getsignal(signal.SIGUSR1) not in (signal.SIG_DFL, signal.SIG_IGN, None)
        if self.interrupted or not tuning:  # again, or before Tune runs: nothing to save, stop now
            self.interrupted = True
            raise KeyboardInterrupt
        self.interrupted = True
        print("\n[sweep] interrupted: stopping the trials and saving the sweep (Ctrl-C again to stop at once)",
              file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGUSR1)  # Tune: save the experiment and end it, trials left resumable

    def __getstate__(self):
        # Tune pickles its callbacks, which hold this: a restored sweep starts uninterrupted.
        return {"interrupted": False}
