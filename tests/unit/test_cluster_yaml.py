"""cluster.yaml is checked against Ray's own cluster-launcher schema, offline."""

import copy
from pathlib import Path

import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER_YAML = Path(__file__).parents[2] / "cluster.yaml"


def load():
    return yaml.safe_load(CLUSTER_YAML.read_text())


def test_cluster_yaml_passes_rays_schema():
    validate_config(prepare_config(load()))  # prepare_config first: a raw file lacks the filled-in defaults


def test_schema_check_catches_a_broken_node_type():
    broken = load()
    del broken["available_node_types"]["gpu_worker"]["node_config"]
    with pytest.raises(Exception, match="node_config"):
        validate_config(prepare_config(broken))


def test_services_stay_off_public_addresses():
    config = load()
    head = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head
    assert "0.0.0.0" not in yaml.safe_dump(config)
    assert "MLFLOW_HOST=$(hostname -I" in head  # the private address only
    workers = config["available_node_types"]["gpu_worker"]["resources"]
    assert workers["GPU"] == 1


def test_every_node_runs_with_rays_token_auth():
    config = load()
    assert config["file_mounts"]["/home/ubuntu/.ray/auth_token"] == "~/.ray/auth_token"
    for commands in (config["head_start_ray_commands"], config["worker_start_ray_commands"]):
        start = next(command for command in commands if "ray start" in command)
        assert "RAY_AUTH_MODE=token" in start
    assert "disabled" not in yaml.safe_dump(config)


def test_setup_installs_the_pinned_project():
    setup = " ".join(copy.deepcopy(load())["setup_commands"])
    assert "-c \"$HOME/visionsweep/constraints.txt\"" in setup and "visionsweep[cluster]" in setup
    assert "torch==2.14.1" in (Path(__file__).parents[2] / "constraints.txt").read_text().split()
