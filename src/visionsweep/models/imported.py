"""Your own model by import path: `model: my_models:small_resnet` (a function or class in `my_models.py`).

It takes the data's shape as keywords `num_classes, in_channels, image_size` (and `multilabel` if it names it),
then its own keyword parameters, and returns a `torch.nn.Module` mapping (B, C, H, W) floats to logits:

    def small_resnet(num_classes, in_channels, image_size, width=32, depth=2): ...

Its parameters, read from the signature, are what `space` may search and `model_params` may set. The module
is looked for as Python looks (installed packages, PYTHONPATH) and in the working directory, as `python -m`
does. Code that is not an installed package (a file or package of your own) is your "code unit": it is
shipped to Ray's workers, hashed and tagged on every trial run, and bundled with a promoted model.
"""

import hashlib
import importlib
import inspect
import os
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from visionsweep.models._registry import REQUIRED, SHAPE_ARGS, Builder

MODEL_SHAPE_ARGS = SHAPE_ARGS[:3]  # what every model must take; multilabel only if it names it


@dataclass(frozen=True)
class UserCode:
    """Where an import-path model's code lives."""

    import_path: str  # pkg.module:function
    unit: Path | None  # the top-level module file or package folder holding it; None: an installed package
    sha256: str | None  # of the unit's .py files (their paths and contents)
    package_version: str | None  # an installed package's version


def builder(import_path: str) -> Builder:
    target = load(import_path)
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError) as err:
        raise ValueError(f"model {import_path!r}: cannot read its signature ({err})") from None
    params = signature.parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    missing = [a for a in MODEL_SHAPE_ARGS if a not in params and not takes_any]
    if missing:
        raise ValueError(
            f"model {import_path!r} must take the keyword arguments {', '.join(MODEL_SHAPE_ARGS)} "
            f"(and its own parameters); its signature is {signature}"
        )
    own = {
        k: p.default for k, p in params.items()
        if k not in SHAPE_ARGS and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    shape_args = MODEL_SHAPE_ARGS + (("multilabel",) if "multilabel" in params else ())
    return Builder(import_path, target, own, shape_args=shape_args, any_parameter=takes_any,
                   where=f"the signature of {import_path}")


def load(import_path: str):
    """The function or class at `pkg.module:attribute`; ValueError naming the module and where it was looked for."""
    module_name, _, attribute = import_path.partition(":")
    searched = search_path()
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and (module_name == err.name or module_name.startswith(err.name + ".")):
            raise ValueError(
                f"model {import_path!r}: no module named {err.name!r}; looked in: {', '.join(searched)}. "
                "Put it in the working directory, install it, or add its folder to PYTHONPATH"
            ) from None
        raise ValueError(f"model {import_path!r}: importing {module_name} failed: {err}") from None
    except Exception as err:  # noqa: BLE001 - the user's module raised while importing: say so, with its message
        raise ValueError(f"model {import_path!r}: importing {module_name} raised {type(err).__name__}: {err}") from None
    target = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            defined = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_"))
            raise ValueError(
                f"model {import_path!r}: {module_name} ({getattr(module, '__file__', '?')}) has no {attribute!r}; "
                f"it defines: {', '.join(defined) or 'nothing callable'}"
            )
        target = getattr(target, part)
    if not callable(target):
        raise ValueError(f"model {import_path!r} is a {type(target).__name__}, not a function or class")
    return target


def search_path() -> list[str]:
    """sys.path with the working directory in it (first, as for `python -m`): where modules are looked for."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    return [p or cwd for p in sys.path]


def is_beside(module_name: str, folder) -> bool:
    """Whether the top-level module of `module_name` (`byo` of `byo.model`) is a package or a .py file in `folder`:
    your code beside a sweep file, found there as Python finds a script's neighbours."""
    top = module_name.partition(".")[0]
    return Path(folder, top).is_dir() or Path(folder, f"{top}.py").is_file()


def user_code(import_path: str) -> UserCode:
    """Where the model's code lives: your own code unit (with its hash), or an installed package (its version)."""
    module_name = import_path.partition(":")[0]
    load(import_path)
    top = sys.modules[module_name.split(".")[0]]
    locations = list(getattr(top, "__path__", [])) or [getattr(top, "__file__", None)]
    unit = Path(locations[0]) if locations[0] else None
    if unit is None or _installed(unit):
        from importlib.metadata import PackageNotFoundError, packages_distributions, version

        distributions = packages_distributions().get(top.__name__, [])
        try:
            found = version(distributions[0]) if distributions else None
        except PackageNotFoundError:
            found = None
        return UserCode(import_path, None, None, found)
    return UserCode(import_path, unit, source_sha256(unit), None)


def code_files(unit: Path) -> list[Path]:
    """The unit's Python files: the module file, or every .py file of the package (no caches)."""
    if unit.is_file():
        return [unit]
    return sorted(p for p in unit.rglob("*.py") if "__pycache__" not in p.parts)


def source_sha256(unit: Path) -> str:
    digest = hashlib.sha256()
    for path in code_files(unit):
        digest.update(str(path.relative_to(unit.parent)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def copy_code(unit: Path, folder: Path) -> Path:
    """Copies the unit's .py files into `folder` (which then goes on sys.path to import it); returns the copy."""
    for path in code_files(unit):
        target = folder / path.relative_to(unit.parent)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    return folder / unit.name


def _installed(path: Path) -> bool:
    """Whether `path` is in site-packages or the standard library (not your own code)."""
    roots = {sysconfig.get_paths()[key] for key in ("purelib", "platlib", "stdlib", "platstdlib")}
    resolved = path.resolve()
    return any(resolved.is_relative_to(Path(root).resolve()) for root in roots) or "site-packages" in resolved.parts
