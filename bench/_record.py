"""Shared by every bench script: the command line, the machine, and where results go.

A script measures, then calls `save(args, name, result, summary)`: that writes results/<name>.json (the
full record: what, where, when, how many runs, the figures), puts its headline figures into
results/summary.json, and redraws the table in bench/RESULTS.md. `--quick` runs write to results/tmp/
(ignored by git) unless `--out` says otherwise, so tests never touch the committed figures.

    args = parse_args(__doc__)
    ... measure ...
    save(args, "overhead", {"overhead_ratio": 1.07, ...}, summary={"overhead_ratio": 1.07})
"""

import argparse
import json
import os
import platform
import re
import sys
import time
from pathlib import Path

BENCH = Path(__file__).parent
RESULTS = BENCH / "results"
REPORT = BENCH / "RESULTS.md"
SRC = BENCH.parent / "src"

# bench/results/summary.json: the latest figure of each benchmark (accuracies as fractions); null until measured.
SUMMARY_KEYS = (
    "overhead_ratio",
    "logging_share",
    "asha_epoch_fraction",
    "ensemble_table_seconds",
    "ask_ms_at_1000",
    "trainable_throughput_ratio",
    "fmnist_best_single_accuracy",
    "fmnist_ensemble_accuracy",
    "gpu_trials_per_hour_ratio",
    "gpu_throughput_ratio",
    "skewed_macro_f1_gain",
)
TABLE_START, TABLE_END = "<!-- results table: written by bench/_record.py -->", "<!-- end of results table -->"

# Run from a checkout without installing: the scripts import visionsweep from src/.
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))
os.environ.setdefault("PYTHONPATH", str(SRC))  # Ray workers import visionsweep too
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def parse_args(description: str, extra=None) -> argparse.Namespace:
    """--quick and --out for every script; `extra(parser)` adds a script's own options."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a small version that checks the script works (tests)")
    parser.add_argument("--out", type=Path, help="results folder (default bench/results, or bench/results/tmp with --quick)")
    if extra:
        extra(parser)
    args = parser.parse_args()
    args.out = args.out or (RESULTS / "tmp" if args.quick else RESULTS)
    args.started = time.time()
    return args


def machine() -> dict:
    """What the figures were measured on; the load average says how busy the shared machine was."""
    model = ""
    if Path("/proc/cpuinfo").exists():
        found = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
        model = found.group(1).strip() if found else ""
    memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model or platform.processor(),
        "memory_gb": round(memory_gb, 1),
        "gpu": gpu_name(),
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def gpu_name() -> str | None:
    """The GPU the figures were measured on, when torch sees one (bench/gpu.py); None on the project's own machine."""
    torch = sys.modules.get("torch")  # never imported only to ask
    return torch.cuda.get_device_name(0) if torch is not None and torch.cuda.is_available() else None


def describe_machine(info: dict) -> str:
    # The CPU says more than the core count: the same machine kind has been AMD EPYC and Intel Xeon with AMX.
    cpu = re.sub(r"\(R\)|\(TM\)| Processor| \d+-Core", "", info.get("cpu_model", "")).strip()
    gpu = f", {info['gpu']}" if info.get("gpu") else ""
    return f"{info['cpus']} cores{f' ({cpu})' if cpu else ''}, {info['memory_gb']:.0f} GB{gpu}, load {info['load_average'][0]:.1f}"


def save(args, name: str, result: dict, summary: dict) -> Path:
    """Writes results/<name>.json, merges `summary` into results/summary.json, redraws RESULTS.md's table."""
    unknown = set(summary) - set(SUMMARY_KEYS)
    if unknown:
        raise KeyError(f"summary keys {sorted(unknown)} are not among {SUMMARY_KEYS}")
    args.out.mkdir(parents=True, exist_ok=True)
    record = {
        "name": name,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(args.started)),
        "seconds": round(time.time() - args.started, 1),
        "quick": args.quick,
        "command": " ".join(["python", os.path.relpath(sys.argv[0], BENCH.parent), *sys.argv[1:]]),
        "machine": machine(),
        **result,
    }
    path = args.out / f"{name}.json"
    path.write_text(json.dumps(record, indent=2, default=float) + "\n")

    summary_path = args.out / "summary.json"
    merged = dict.fromkeys(SUMMARY_KEYS)
    if summary_path.exists():
        merged.update({k: v for k, v in json.loads(summary_path.read_text()).items() if k in SUMMARY_KEYS})
    merged.update(summary)
    summary_path.write_text(json.dumps(merged, indent=2) + "\n")
    if args.out.resolve() == RESULTS.resolve():
        write_report(RESULTS, REPORT)
    print(f"{name}: {json.dumps(summary)} -> {path}")
    return path


def write_report(results: Path, report: Path) -> None:
    """The table of every results/*.json that carries a `headline`, between the markers of RESULTS.md."""
    rows = ["| benchmark | measured | target | met | runs | date | machine |", "|---|---|---|---|---|---|---|"]
    for path in sorted(results.glob("*.json")):
        record = json.loads(path.read_text())
        if "headline" not in record:
            continue
        met = {True: "yes", False: "**no**", None: "-"}[record.get("met")]
        rows.append(
            f"| {record['name']} | {record['headline']} | {record.get('target', '-')} | {met} | {record.get('runs', '-')} "
            f"| {record['date']} | {describe_machine(record['machine'])} |"
        )
    table = "\n".join([TABLE_START, *rows, TABLE_END])
    text = report.read_text() if report.exists() else f"# Benchmark results\n\n{TABLE_START}\n{TABLE_END}\n"
    before, _, rest = text.partition(TABLE_START)
    _, _, after = rest.partition(TABLE_END)
    report.write_text(before + table + after)


def merge(folder: Path) -> None:
    """Takes in results measured elsewhere (bench/gpu_device.sh's $OUT): their records, and their summary's figures."""
    for path in folder.glob("*.json"):
        if path.name != "summary.json":
            (RESULTS / path.name).write_text(path.read_text())
    summary = json.loads((RESULTS / "summary.json").read_text())
    measured = json.loads((folder / "summary.json").read_text())
    summary.update({k: v for k, v in measured.items() if k in SUMMARY_KEYS and v is not None})
    (RESULTS / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":  # redraw the table by hand: python bench/_record.py [FOLDER of results to take in first]
    if len(sys.argv) > 1:
        merge(Path(sys.argv[1]))
    write_report(RESULTS, REPORT)
