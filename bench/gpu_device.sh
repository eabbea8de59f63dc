#!/usr/bin/env bash
# Runs bench/gpu.py on a GPU machine in one command: installs, runs, writes gpu.json, summary.json and gpu.log
# into $OUT (default bench/results/device).
#
# It needs the package registries, or what bench/gpu_carry.py prepared from them:
# - With PyPI and Debian's archive reachable (a cloud GPU machine): a venv with the project's pins
#   (constraints.txt), as `make setup` makes it, and dataset-fashion-mnist.
# - With .gpu-carry/ beside this checkout (a machine without network whose python3 already holds a CUDA torch,
#   as the device machines this project is lent): the carried wheels (constraints.txt's pins, what that
#   image lacks) go into /tmp/site without touching the image's packages, and Fashion-MNIST is unpacked from its
#   Debian package. torch is then the image's own: gpu.json's environment names the torch that ran.
#
#     bash bench/gpu_device.sh [bench/gpu.py options]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results/device}
mkdir -p "$OUT"
CARRY=.gpu-carry
export PYTHONUNBUFFERED=1 MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=false

if [ -d "$CARRY" ]; then
  PYTHON=python3
  wheels=/tmp/gpu-carry
  rm -rf "$wheels" && mkdir -p "$wheels"
  # Files cut into pieces (a call carries at most 64 MiB) are joined in the order of their folders.
  for piece in $(ls "$CARRY"/*/*.part-* 2>/dev/null | sort -t/ -k3); do
    name=$(basename "$piece"); cat "$piece" >> "$wheels/${name%.part-*}"
  done
  find "$CARRY" -mindepth 2 -type f ! -name '*.part-*' ! -name SHA256SUMS -exec cp {} "$wheels/" \;
  if ! (cd "$wheels" && sha256sum --check --quiet "$OLDPWD/$CARRY/1/SHA256SUMS"); then
    echo "gpu_device.sh: carried files missing or damaged (each .gpu-carry/N must come in its own call, one" \
         "right after the other, while the machine stays warm): $(ls "$CARRY")" >&2
    exit 2
  fi
  $PYTHON -m pip install --quiet --no-index --no-deps --no-compile --target /tmp/site "$wheels"/*.whl
  dpkg -x "$wheels"/dataset-fashion-mnist_*.deb /
  export PYTHONPATH=/tmp/site:$PWD/src
else
  test -x .venv/bin/python || python3 -m venv .venv
  .venv/bin/pip install --quiet --upgrade pip
  .venv/bin/pip install --quiet -c constraints.txt -e .
  test -d /usr/share/datasets/fashion-mnist || (apt-get update -q && apt-get install -y -q dataset-fashion-mnist)
  PYTHON=.venv/bin/python
  export PYTHONPATH=$PWD/src
fi

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.log"
$PYTHON bench/gpu.py --out "$OUT" "$@" 2>&1 | tee -a "$OUT/gpu.log"
