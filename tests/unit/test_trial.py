"""The task object and the trial contract, as pure logic: no Ray, no MLflow (reports go to a list)."""

import contextlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from visionsweep.config import parse_config
from visionsweep.task import MultiClass, MultiLabel, Task, is_multilabel
from visionsweep.trainables import MODEL_FILE, PREDICTIONS_FILE, Trial, TrialData


def test_the_labels_decide_the_task_and_the_task_decides_the_rest():
    multiclass = Task.of(np.array([0, 2, 1]), ["a", "b", "c"])
    multilabel = Task.of(np.array([[1, 0, 1]]), ["a", "b", "c"])
    assert isinstance(multiclass, MultiClass) and isinstance(multilabel, MultiLabel)
    assert is_multilabel(torch.zeros(2, 3)) and not is_multilabel(torch.zeros(2, dtype=torch.long))  # tensors too
    logits = torch.tensor([[2.0, 0.0, -2.0]])
    assert multiclass.probabilities(logits).sum().item() == pytest.approx(1.0)
    assert multilabel.probabilities(logits)[0, 0].item() == pytest.approx(torch.sigmoid(torch.tensor(2.0)).item())
    probs = np.array([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1]])
    assert multiclass.decide(probs).tolist() == [0, 1]
    assert multilabel.decide(probs, thresholds=[0.5, 0.25, 0.5]).tolist() == [[True, True, False], [False, True, False]]
    assert multiclass.thresholds(probs, np.array([0, 1]), "per_class") is None
    assert multilabel.thresholds(probs, np.array([[1, 1, 0], [0, 1, 0]]), "fixed", 0.4).tolist() == pytest.approx([0.4] * 3)
    assert multiclass.scores(probs, np.array([0, 0]), "val_") == {"val_accuracy": 0.5}
    scored = multilabel.scores(probs, np.array([[1, 0, 0], [0, 1, 0]]), "test_", per_class=True)
    assert scored["test_micro_f1"] == 1.0 and scored["test_f1_c"] == 0.0
    assert multiclass.search_metrics() == ("val_loss", "val_accuracy")
    assert "val_micro_f1" in multilabel.search_metrics() and multilabel.default_loss == "bce"
    assert multiclass == MultiClass(["a", "b", "c"]) != multilabel


def tiny_data(rows: int = 6, classes: int = 3) -> TrialData:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (rows, 4, 4, 1), dtype=np.uint8)
    labels = np.arange(rows) % classes
    return TrialData(images, labels, images[:4], labels[:4], images[:5], labels[:5], tuple("abc"[:classes]))


CONFIG = parse_config({"name": "contract", "scheduler": {"max_epochs": 4, "grace_period": 1}})


class Reports:
    """Collects what a Trial sends, keeping each checkpoint folder's files."""

    def __init__(self, folder: Path):
        self.folder, self.results = folder, []

    def __call__(self, result: dict, checkpoint: str | None) -> None:
        self.results.append(result)
        if checkpoint is not None:
            shutil.copytree(checkpoint, self.folder / str(result["epoch"]))

    def persisted(self) -> list[int]:
        return sorted(int(folder.name) for folder in self.folder.iterdir())

    def checkpoint(self, epoch: int):
        folder = self.folder / str(epoch)

        class Checkpoint:
            @contextlib.contextmanager
            def as_directory(self):
                yield str(folder)

        return Checkpoint()


def test_report_keeps_the_best_epochs_predictions_and_model(tmp_path):
    data, reports = tiny_data(), Reports(tmp_path)
    trial = Trial(data, CONFIG, send=reports)
    model = torch.nn.Linear(2, 3)
    for epoch, accuracy in enumerate([0.5, 0.75, 0.25], start=1):
        with torch.no_grad():
            model.weight.fill_(epoch)
        val = np.full((4, 3), epoch / 10, np.float32)
        trial.report({"val_accuracy": accuracy}, val_probs=val, test_probs=np.zeros((5, 3)), model=model,
                     state={"epoch_seen": epoch})
    assert [r["epoch"] for r in reports.results] == [1, 2, 3]
    assert [r["best_epoch"] for r in reports.results] == [1, 2, 2]
    with np.load(tmp_path / "3" / PREDICTIONS_FILE) as stored:
        assert int(stored["epoch"]) == 2 and stored["val_probs"][0, 0] == pytest.approx(0.2)
        assert stored["test_probs"].dtype == np.float32 and stored["classes"].tolist() == ["a", "b", "c"]
    assert torch.load(tmp_path / "3" / MODEL_FILE, weights_only=True)["weight"][0, 0].item() == 2.0

    resumed = Trial(data, CONFIG, checkpoint=reports.checkpoint(3), send=reports)
    assert resumed.restore() == {"epoch_seen": 3} and resumed.epoch == 3 and resumed.best_epoch == 2
    assert not resumed.is_best({"val_accuracy": 0.7}) and resumed.is_best({"val_accuracy": 0.8})
    resumed.report({"val_accuracy": 0.1})  # a worse epoch without predictions: the best epoch's stay
    with np.load(tmp_path / "4" / PREDICTIONS_FILE) as stored:
        assert int(stored["epoch"]) == 2
    assert (tmp_path / "4" / MODEL_FILE).exists()


def test_checkpoints_persist_at_improving_epochs_every_n_rungs_and_the_last_epoch(tmp_path):
    fifo = parse_config({"name": "every", "scheduler": {"kind": "fifo", "max_epochs": 7},
                         "storage": {"checkpoint_every": 3}})
    data, reports = tiny_data(), Reports(tmp_path)
    trial = Trial(data, fifo, send=reports)
    for accuracy in [0.5, 0.4, 0.4, 0.4, 0.6, 0.4, 0.4]:
        trial.report({"val_accuracy": accuracy}, state={"epoch_seen": trial.epoch + 1})
    assert len(reports.results) == 7 and reports.persisted() == [1, 3, 5, 6, 7]
    resumed = Trial(data, fifo, checkpoint=reports.checkpoint(6), send=reports)
    assert resumed.restore() == {"epoch_seen": 6} and resumed.epoch == 6 and resumed.best_epoch == 5

    asha = parse_config({"name": "rungs", "scheduler": {"max_epochs": 10, "grace_period": 1, "reduction_factor": 2},
                         "storage": {"checkpoint_every": 100}})
    assert asha.scheduler.rung_epochs() == {1, 2, 4, 8}
    assert [e for e in range(1, 11) if Trial(data, asha).persists(e)] == [1, 2, 4, 8, 10]
    assert parse_config({"name": "odd", "scheduler": {"max_epochs": 9, "grace_period": 2, "reduction_factor": 2.5}}
                        ).scheduler.rung_epochs() == {2, 5}  # Ray stops at the first epoch at or past each rung


def test_val_probs_are_scored_when_the_metric_is_not_given_and_shapes_are_checked(tmp_path):
    data, reports = tiny_data(), Reports(tmp_path)
    trial = Trial(data, CONFIG, send=reports)
    val = np.eye(3, dtype=np.float32)[data.y_val]  # every validation row right
    trial.report({"train_loss": 0.3}, val_probs=val)
    assert reports.results[0]["val_accuracy"] == 1.0 and reports.results[0]["train_loss"] == 0.3
    with pytest.raises(ValueError, match="lack the sweep's search.metric 'val_accuracy'"):
        trial.report({"train_loss": 0.2})
    with pytest.raises(ValueError, match=r"test_probs has shape \(4, 3\); expected \(5, 3\)"):
        trial.report({"val_accuracy": 0.9}, test_probs=np.zeros((4, 3)))


def test_trial_data_describes_the_split():
    data = tiny_data()
    assert data.task == MultiClass(["a", "b", "c"])
    assert data.model_shape == {"num_classes": 3, "in_channels": 1, "image_size": 4, "multilabel": False}
    assert len(data.normalization["mean"]) == 1 and data.normalization["std"][0] > 0


def test_a_training_function_is_found_by_its_import_path(tmp_path):
    from visionsweep.config import ConfigError
    from visionsweep.trainables import load_trainable, train_classifier

    package = tmp_path / "mine_for_test"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "loop.py").write_text("def train(params, trial):\n    pass\n")
    with pytest.raises(ConfigError, match="cannot import mine_for_test.loop"):
        load_trainable("mine_for_test.loop:train")  # neither on sys.path nor beside a sweep file
    train, root = load_trainable("mine_for_test.loop:train", str(tmp_path))  # beside the sweep file
    assert train.__name__ == "train" and root == str(tmp_path)
    with pytest.raises(ConfigError, match="has no function 'fit'"):
        load_trainable("mine_for_test.loop:fit", str(tmp_path))
    assert load_trainable(None) == (train_classifier, None)
    with pytest.raises(ConfigError, match="trainable: 'loop': expected package.module:function"):
        parse_config({"name": "x", "trainable": "loop"})
    # Your own function reads whatever parameters it likes: no check against the built-in recipe's names.
    assert parse_config({"name": "x", "trainable": "a.b:c", "space": {"width": {"int": [8, 32]}}}).space


def test_a_submitted_job_carries_the_training_functions_package(tmp_path):
    from visionsweep.config import load_config
    from visionsweep.orchestrator._submit import job_runtime_env

    byo = Path(__file__).resolve().parents[2] / "examples" / "byo"
    config = load_config(byo / "trainable.yaml")
    assert str(byo / "byo") in job_runtime_env(config, str(tmp_path))["py_modules"]
