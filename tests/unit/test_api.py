"""The Python API's pure parts: configs from a path, a dict or a SweepConfig, and os.environ kept."""

import os

import pytest

import visionsweep
from visionsweep import api
from visionsweep.config import ConfigError, parse_config


def test_a_config_from_a_path_a_dict_or_a_parsed_config(tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text("name: from-file\nsearch: {trials: 4}\n")
    from_file = api.as_config(path, ["search.trials=6"])
    assert from_file.search.trials == 6 and from_file.folder == str(tmp_path)
    raw = {"name": "from-dict", "search": {"trials": 4}}
    from_dict = api.as_config(raw, ["search.trials=8", "scheduler.kind=fifo"])
    assert from_dict.search.trials == 8 and from_dict.scheduler.kind == "fifo" and raw["search"]["trials"] == 4
    parsed = parse_config({"name": "parsed"})
    assert api.as_config(parsed) is parsed and api.as_config(parsed, ["search.trials=2"]).search.trials == 2
    with pytest.raises(ConfigError, match="scheduler.kind = 'hyperband'"):
        api.as_config(raw, ["scheduler.kind=hyperband"])
    with pytest.raises(ConfigError, match="expected a path, a dict or a SweepConfig"):
        api.as_config(3)


def test_os_environ_is_left_as_it_was_found(monkeypatch):
    monkeypatch.setenv("VISIONSWEEP_TEST_KEPT", "before")
    monkeypatch.delenv("VISIONSWEEP_TEST_ADDED", raising=False)
    before = dict(os.environ)
    with api.environment_kept():
        os.environ["VISIONSWEEP_TEST_KEPT"] = "changed"
        os.environ["VISIONSWEEP_TEST_ADDED"] = "added"
    assert dict(os.environ) == before


def test_the_package_exposes_the_api_lazily():
    assert visionsweep.run is api.run and visionsweep.promote is api.promote and visionsweep.predict is api.predict
    with pytest.raises(ConfigError, match="give --experiment"):
        visionsweep.ensemble()  # the ensemble package answers the call with api.ensemble
    assert visionsweep.ensemble.parse_top_k("10%") == (10.0, True)
