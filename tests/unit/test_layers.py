"""The rooms of visionsweep and who may enter which: read from the source, no import run.

Each package (room) imports only public names of the rooms below it: never a room above it (that makes an
import circle, or drags Ray into a served model), and never another room's private `_module` or `_name`.
A new top-level module or package takes its place in LAYERS.
"""

import ast
import sys
from pathlib import Path

import pytest

SOURCE = Path(__file__).parents[2] / "src" / "visionsweep"

# Lowest first. A room may import the rooms of earlier layers; rooms of one layer do not import each other.
LAYERS = [
    {"__init__", "errors", "outcome", "metrics"},  # errors, how a trial ended, the measures
    {"record", "task"},  # the MLflow record's names; multi-class or multi-label
    {"data", "models", "search_spaces"},  # each owns its registry and its part of the config
    {"config"},  # the sweep file, checked against those registries in one step
    {"trainables"},
    {"tracking"},
    {"orchestrator", "ensemble"},
    {"registry"},
    {"report"},  # Grad-CAM loads a trial's model through the registry
    {"api"},  # run, ensemble, promote, predict from Python
    {"cli"},
]
LAYER = {room: rank for rank, rooms in enumerate(LAYERS) for room in rooms}


def rooms() -> list[str]:
    return sorted(p.stem if p.is_file() else p.name for p in SOURCE.iterdir()
                  if (p.suffix == ".py" or (p / "__init__.py").exists()) and not p.name.startswith("__pycache__"))


def imports(room: str) -> list[tuple[str, int, str, list[str]]]:
    """(file, line, module, names) of every `import visionsweep...` / `from visionsweep... import ...` in a room,
    at any depth (imports inside functions count too)."""
    path = SOURCE / room
    files = sorted(path.rglob("*.py")) if path.is_dir() else [SOURCE / f"{room}.py"]
    found = []
    for file in files:
        for node in ast.walk(ast.parse(file.read_text(), str(file))):
            if isinstance(node, ast.Import):
                found += [(file.name, node.lineno, alias.name, []) for alias in node.names
                          if alias.name.startswith("visionsweep")]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("visionsweep"):
                found.append((file.name, node.lineno, node.module, [alias.name for alias in node.names]))
    return found


def target(module: str, name: str | None) -> tuple[str, list[str]]:
    """The room an import reaches and the dotted path inside it: `visionsweep.data._files` -> ("data", ["_files"])."""
    parts = module.split(".")[1:] + ([name] if name else [])
    if not parts:
        return "__init__", []
    room = parts[0] if parts[0] in LAYER or (SOURCE / parts[0]).exists() or (SOURCE / f"{parts[0]}.py").exists() \
        else "__init__"  # `from visionsweep import __version__`
    return room, parts[1:] if room != "__init__" else []


def test_every_room_has_a_layer():
    assert sorted(set(rooms()) - set(LAYER)) == [], "give each new module or package its layer in LAYERS"


@pytest.mark.parametrize("room", rooms())
def test_a_room_imports_only_public_names_of_rooms_below_it(room):
    problems = []
    for file, line, module, names in imports(room):
        for name in names or [None]:
            other, inside = target(module, name)
            where = f"{room}/{file}:{line}: {module}" + (f" import {name}" if name else "")
            if other == room:
                continue
            # `visionsweep.run(...)`, `visionsweep.ensemble(...)`: a package's __init__ may load the Python API
            # (api.py) on first use, as its facade.
            facade = file == "__init__.py" and (other == "api" or (room == "__init__" and other == "ensemble"))
            if LAYER.get(other, -1) >= LAYER[room] and not facade:
                problems.append(f"{where}: {other} is not below {room}")
            if any(part.startswith("_") and not part.startswith("__") for part in inside):
                problems.append(f"{where}: a private name of {other}")
    assert problems == []


def test_the_checks_catch_what_they_are_for(tmp_path, monkeypatch):
    """The test itself can fail: a lower room reaching up, and a room reaching into another's private module."""
    fake = tmp_path / "visionsweep"
    (fake / "data").mkdir(parents=True)
    (fake / "tracking").mkdir()
    (fake / "data" / "__init__.py").write_text("def f():\n    from visionsweep.tracking import connect\n")
    (fake / "tracking" / "__init__.py").write_text("from visionsweep.data._files import _decode_chunk\n")
    monkeypatch.setattr(sys.modules[__name__], "SOURCE", fake)
    with pytest.raises(AssertionError, match="tracking is not below data"):
        test_a_room_imports_only_public_names_of_rooms_below_it("data")
    with pytest.raises(AssertionError, match="a private name of data"):
        test_a_room_imports_only_public_names_of_rooms_below_it("tracking")
