"""`visionsweep validate` checks what a run would meet, without decoding an image or starting anything: the data
as listed (layout, labels, counts against the split), the metric against the task, model parameters against the
types their builder declares, and resources against this machine."""

import pytest
import torch
import yaml

from visionsweep.cli import main
from visionsweep.config import ConfigError, parse_config

from image_sets import class_folders, csv_set, photo_set


def validate(tmp_path, capsys, **settings) -> tuple[int, str, str]:
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"name": "v", **settings}))
    code = main(["validate", str(path)])
    out, err = capsys.readouterr()
    return code, out, err


def test_label_files_set_is_listed_with_its_labels(tmp_path, capsys):
    root = photo_set(tmp_path / "photos", images=24)
    code, out, err = validate(tmp_path, capsys, data={"dataset": str(root)}, search={"metric": "val_micro_f1"})
    assert code == 0, err
    assert "data (label_files: images/ + annotations/): 24 files; multi-label, 2 labels; listed in" in out
    assert "rows per label: clouds 12, sea 8" in out


def test_csv_set_is_listed_from_its_images_folder(tmp_path, capsys):
    table = csv_set(tmp_path / "set")
    code, out, err = validate(tmp_path, capsys, data={"dataset": str(table)}, search={"metric": "val_macro_f1"})
    assert code == 0, err
    assert f"csv, images in {tmp_path / 'set' / 'images'}" in out and "rows per label: even 3, odd 3" in out


def test_a_metric_of_the_other_task_is_refused(tmp_path, capsys):
    root = class_folders(tmp_path / "set", {"cat": 20, "dog": 20})
    code, _, err = validate(tmp_path, capsys, data={"dataset": str(root)}, search={"metric": "val_micro_f1"})
    assert code == 2
    assert "search.metric 'val_micro_f1': data.dataset" in err and "is multi-class; allowed: val_loss, val_accuracy" in err
    code, _, err = validate(tmp_path, capsys, data={"dataset": str(photo_set(tmp_path / "photos"))})
    assert code == 2 and "search.metric 'val_accuracy'" in err and "is multi-label; allowed: val_loss, val_micro_f1" in err
    code, _, err = validate(tmp_path, capsys, data={"dataset": "digits_mosaic", "mosaic_images": 300},
                            search={"metric": "val_micro_f1"}, train={"loss": "cross_entropy"})
    assert code == 2 and "train.loss cross_entropy: data.dataset digits_mosaic is multi-label" in err


@pytest.mark.parametrize("settings, expected", [
    ({"model_params": {"kernel_size": "abc"}}, "model_params: model 'cnn': kernel_size = 'abc': Input should be a valid integer"),
    ({"model_params": {"kernel_size": -3}}, "kernel_size = -3: Input should be greater than 0"),
    ({"model_params": {"pool": "bogus"}}, "pool = 'bogus': Input should be 'max', 'avg' or 'none'"),
    ({"model_params": {"channels": 0}}, "channels = 0: Input should be greater than 0"),
    ({"model_params": {"conv2.stride": 1.5}}, "conv2.stride = 1.5: Input should be a valid integer"),
    ({"model_params": {"dropout": 1.0}}, "dropout = 1.0: Input should be less than 1"),
    ({"space": {"kernel_size": {"int": [-3, 5]}}}, "space.kernel_size: model 'cnn': kernel_size = -3"),
    ({"space": {"conv{i}.pool": {"categorical": ["max", "bogus"], "repeat": "n_conv"}}}, "conv{i}.pool = 'bogus'"),
    ({"model": "vgg", "model_params": {"activation": "tanh"}}, "activation = 'tanh': Input should be 'relu', 'gelu'"),
    ({"model": "resnet18", "model_params": {"freeze": "all"}}, "freeze = 'all': Input should be 'none', 'backbone' or"),
])
def test_model_parameters_are_checked_against_the_builders_types(tmp_path, capsys, settings, expected):
    code, _, err = validate(tmp_path, capsys, **settings)
    assert code == 2 and expected in err
    with pytest.raises(ConfigError, match="model_params|space"):  # the same when a run reads the file
        parse_config({"name": "v", **settings})


def test_labels_too_few_for_the_split_are_refused(tmp_path, capsys):
    root = class_folders(tmp_path / "set", {"cat": 20, "dog": 20, "eel": 1})
    code, _, err = validate(tmp_path, capsys, data={"dataset": str(root)})
    assert code == 2 and "needs 3 of each class: eel 1" in err
    root = class_folders(tmp_path / "one", {"cat": 20})
    code, _, err = validate(tmp_path, capsys, data={"dataset": str(root)})
    assert code == 2 and "one class only (cat)" in err
    code, _, err = validate(tmp_path, capsys, data={"dataset": str(tmp_path / "set"), "folds": 25})
    assert code == 2 and "data.folds = 25" in err


def test_resources_this_machine_lacks_are_named(tmp_path, capsys, monkeypatch):
    gpus = torch.cuda.device_count()
    code, out, err = validate(tmp_path, capsys, resources={"gpu": gpus + 2, "cpu": 4096})
    assert code == 0 and "ok" in out
    assert f"warning: resources.cpu 4096 per trial, but this machine has" in err
    assert f"warning: resources.gpu {gpus + 2} per trial, but this machine has {gpus or 'no'} GPU" in err
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump({"name": "v", "resources": {"gpu": gpus + 2}}))
    assert main(["run", str(tmp_path / "sweep.yaml")]) == 2  # refused before Ray starts
    assert "no trial could start here" in capsys.readouterr().err
