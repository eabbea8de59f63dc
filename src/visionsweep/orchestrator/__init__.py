"""Builds and runs the Tuner: Optuna searcher (what to try), ASHA scheduler (what to stop), trainable (the work)."""

from visionsweep.orchestrator._searcher import CoordinateSearch, StudySearch, make_sampler
from visionsweep.orchestrator._refit import refit_sweep
from visionsweep.orchestrator._resume import resume_sweep
from visionsweep.orchestrator._state import SweepState, open_study_storage
from visionsweep.orchestrator._submit import submit_sweep
from visionsweep.orchestrator._sweep import SweepResult, local_ray_auth, run_sweep

__all__ = [
    "CoordinateSearch",
    "StudySearch",
    "SweepResult",
    "SweepState",
    "local_ray_auth",
    "make_sampler",
    "open_study_storage",
    "refit_sweep",
    "resume_sweep",
    "run_sweep",
    "submit_sweep",
]
