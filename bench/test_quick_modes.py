"""Every bench script's --quick mode runs end to end and writes the record and summary the table is built from:
`make bench-check` (a few minutes on 2 cores: not part of `make test`, which stays under 10 minutes)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
# script -> (its summary key, the bounds a sane figure lies in, keys its record must hold)
SCRIPTS = {
    "overhead": ("overhead_ratio", (0.5, 50), {"tuner_ratio", "bare_work_seconds", "breakdown_seconds"}),
    "logging_share": ("logging_share", (0, 1), {"demo", "headline_sweep"}),
    "asha_efficiency": ("asha_epoch_fraction", (0, 10), {"seeds"}),
    "ensemble_scale": ("ensemble_table_seconds", (0.01, 120), {"repeats", "median_total_seconds", "populate_seconds"}),
    "ask_latency": ("ask_ms_at_1000", (0.01, 1000), {"ask_ms_by_trials", "random_sampler_ms_by_trials"}),
    "quality": ("fmnist_best_single_accuracy", (0.5, 1), {"table", "ensemble_k"}),
    # Without CUDA a dry run on the CPU: its figures stay in the record (the ratio as trials_per_hour_ratio).
    "gpu": ("gpu_trials_per_hour_ratio", (0.05, 50), {"throughput", "sweeps", "environment"}),
    "rare_labels": ("skewed_macro_f1_gain", (-1, 1), {"arms", "rarest_label", "label_counts"}),
    "throughput": ("trainable_throughput_ratio", (0.1, 10), {"images_per_second", "whole_epoch_ratio", "augmentation"}),
}
RECORD_NAMES = {"logging_share": "logging"}


AT_ONCE = 3  # scripts run together: much of a quick run is start-up, which overlaps; all nine at once on 2 cores
# timed Ray out ("The current node timed out during startup")


@pytest.fixture(scope="module")
def quick_runs(request, tmp_path_factory):
    """Every selected script, AT_ONCE at a time, each in a folder of its own with its stdout and stderr."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    selected = sorted({item.callspec.params["script"] for item in request.session.items
                       if item.module is request.module and hasattr(item, "callspec")})
    runs, running = {}, []
    for script in selected:
        while len(running) >= AT_ONCE:
            running.pop(0).wait()
        out = tmp_path_factory.mktemp(script)
        with open(out / "stdout.txt", "w") as stdout, open(out / "stderr.txt", "w") as stderr:
            runs[script] = out, subprocess.Popen(
                [sys.executable, str(ROOT / "bench" / f"{script}.py"), "--quick", "--out", str(out)],
                stdout=stdout, stderr=stderr, cwd=out, env=env,
            )
        running.append(runs[script][1])
    yield runs
    for _, process in runs.values():
        if process.poll() is None:
            process.kill()


@pytest.mark.parametrize("script", SCRIPTS)
def test_quick_mode(script, quick_runs):
    tmp_path, process = quick_runs[script]
    returncode = process.wait(timeout=300)
    assert returncode == 0, (tmp_path / "stderr.txt").read_text()[-3000:]
    key, (low, high), details = SCRIPTS[script]
    record = json.loads((tmp_path / f"{RECORD_NAMES.get(script, script)}.json").read_text())
    assert record["quick"] is True and record["machine"]["cpus"] >= 1
    assert {"date", "command", "headline", "target", "met", "runs"} <= set(record) and details <= set(record)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary) == {
        "overhead_ratio", "logging_share", "asha_epoch_fraction", "ensemble_table_seconds", "ask_ms_at_1000",
        "fmnist_best_single_accuracy", "fmnist_ensemble_accuracy", "gpu_trials_per_hour_ratio", "gpu_throughput_ratio",
        "skewed_macro_f1_gain", "trainable_throughput_ratio",
    }
    if script == "gpu":
        assert record["environment"]["device"] == "cpu" and record["met"] is None
        assert summary[key] is None and summary["gpu_throughput_ratio"] is None  # no GPU figure from a CPU
        assert low <= record["trials_per_hour_ratio"] <= high
        assert 0.1 <= record["throughput"]["throughput_ratio"] <= 10
        assert {"bf16", "fp32"} == set(record["throughput"]["precision"])
        assert all(s["trials_complete"] == record["trials"] for s in record["sweeps"].values())
    elif summary[key] is None:  # TPE + ASHA never came within 0.3 points: only then may the fraction be missing
        assert script == "asha_efficiency"
        (seed,) = record["seeds"]
        assert seed["tpe_asha"]["best_val_accuracy"] < seed["random"]["best_val_accuracy"] - 0.003
    else:
        assert low <= summary[key] <= high, f"{key} = {summary[key]}"
    assert summary["gpu_trials_per_hour_ratio"] is None
    # Quick runs never touch the committed figures.
    assert not (tmp_path / "RESULTS.md").exists()
