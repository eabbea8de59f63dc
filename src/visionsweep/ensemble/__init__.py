"""The final job: vote over the stored predictions of a sweep's best trials (or of registered models),
choose and weight members on the validation rows, and score every method on the test rows.

The voting and selection functions are plain numpy and import nothing else, because a registered
model imports them where it is served; the job (MLflow, Ray) loads when first used.
"""

import sys
import types

from visionsweep.ensemble.agreement import member_agreement
from visionsweep.ensemble.selection import bagged_selection, fit_weights, greedy_selection
from visionsweep.ensemble.voting import centre_on_thresholds, hard_vote, soft_vote

_JOB = ("DEFAULT_TOP_K", "EnsembleTable", "build_table", "parse_top_k", "run_ensemble")

__all__ = [*_JOB, "Members", "bagged_selection", "centre_on_thresholds", "fit_weights", "greedy_selection", "hard_vote",
           "member_agreement", "soft_vote"]


def __getattr__(name):
    if name in _JOB:
        from visionsweep.ensemble import _job

        return getattr(_job, name)
    if name == "Members":
        from visionsweep.ensemble._members import Members

        return Members
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _CallableModule(types.ModuleType):
    """`visionsweep.ensemble(...)` is the Python API's ensemble function (api.py), and `visionsweep.ensemble` is
    also this package: importing a subpackage sets the parent's attribute of that name to the module, so the
    module itself answers the call."""

    def __call__(self, *args, **kwargs):
        from visionsweep.api import ensemble

        return ensemble(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
