# Two commands on a fresh machine: `make demo` and `make test`. Both create the venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Every install goes through constraints.txt, the exact tested versions: it keeps pip from resolving a newer
# torch (a CUDA build of several GB) while pyproject.toml declares compatible ranges.
CONSTRAINTS := constraints.txt

.PHONY: setup data demo test test-unit test-integration ui bench bench-check bench-full bench-quality bench-gpu bench-rare-labels clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c $(CONSTRAINTS) -e '.[test]'
	touch $@

# Fashion-MNIST ships as a Debian package (31 MB, MIT): /usr/share/datasets/fashion-mnist
data:
	test -d /usr/share/datasets/fashion-mnist || (apt-get update -q && apt-get install -y -q dataset-fashion-mnist)

demo: setup
	$(BIN)/visionsweep run examples/digits.yaml
	$(BIN)/visionsweep ensemble --experiment digits-demo --top-k 1 3 10% 25% 50% 100%
	$(BIN)/visionsweep report --experiment digits-demo
	@echo
	@echo "Browse every trial:  $(BIN)/visionsweep ui   then open http://127.0.0.1:5000"

# Two test files at a time (pytest-xdist; a file's tests stay together, sharing its fixtures): most of an
# integration test's time is waiting for processes, Ray and servers to start, which overlaps well. On 2 cores
# busy with other work (2026-12-03): the integration and cluster tests one at a time 17 minutes (load 6-9); the
# whole suite two files at a time 12.7 (load 8-10), three at a time 11.7 (load 10-24); but with three, at load 25,
# Ray's fixed 30-s wait for a new node to start ran out, so two.
test: setup
	$(BIN)/python -m pytest -n 2 --dist loadfile tests

test-unit: setup
	$(BIN)/python -m pytest tests/unit

# Benchmarks 1-5 and 9: bench/results/*.json, summary.json and the table in bench/RESULTS.md. 9 min 20 s on 2 cores
# (2026-12-03) with one ASHA seed and the logging benchmark's Fashion-MNIST sweep, before the throughput benchmark
# (about 3 min on a quiet machine, 5.6 at load 7) and the ask latency at 1,000 trials (1 min) joined; the figures in RESULTS.md
# come from `make bench-full` (three ASHA seeds, about 3 minutes each, and the demo sweep's logging too: 16 min).
ASHA_SEEDS ?= 1
LOGGING_SWEEPS ?= fashion
bench: setup data
	$(BIN)/python bench/overhead.py
	$(BIN)/python bench/logging_share.py --sweeps $(LOGGING_SWEEPS)
	$(BIN)/python bench/asha_efficiency.py --seeds $(ASHA_SEEDS)
	$(BIN)/python bench/ensemble_scale.py
	$(BIN)/python bench/ask_latency.py
	$(BIN)/python bench/throughput.py

# Every bench script's --quick mode, end to end (a few minutes; not in `make test`, which stays under 10).
bench-check: setup
	$(BIN)/python -m pytest bench/test_quick_modes.py

bench-full:
	$(MAKE) bench ASHA_SEEDS="1 2 3" LOGGING_SWEEPS="fashion demo"

# Benchmark 6: a Fashion-MNIST sweep plus its ensemble, up to 60 minutes.
bench-quality: setup data
	$(BIN)/python bench/quality.py

# Benchmark 7, on a machine with a GPU: under 8 minutes (bench/gpu.py; README, GPU).
bench-gpu: setup data
	$(BIN)/python bench/gpu.py

# Benchmark 8: rare labels, today's multi-label defaults against the new ones (bench/rare_labels.py).
bench-rare-labels: setup data
	$(BIN)/python bench/rare_labels.py

ui: setup
	$(BIN)/visionsweep ui

clean:
	rm -rf mlflow.db mlflow.db-wal mlflow.db-shm mlartifacts mlruns ray_results test-output report-*.html
