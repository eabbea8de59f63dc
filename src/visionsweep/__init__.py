"""visionsweep: image-classification sweeps on Ray Tune, tracked in MLflow.

From Python: `visionsweep.run(config)`, `visionsweep.ensemble(...)`, `visionsweep.promote(...)`,
`visionsweep.predict(...)` (api.py): the functions the command line calls. They load on first use, so that
`import visionsweep` stays cheap.
"""

__version__ = "0.1.0"

_API = ("run", "ensemble", "promote", "predict", "RunResult")
__all__ = [*_API, "__version__"]


# `ensemble` is also a subpackage: once imported, it is the attribute, and answers the call itself.
def __getattr__(name):
    if name == "ensemble":
        import visionsweep.ensemble

        return visionsweep.ensemble
    if name in _API:
        from visionsweep import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
