"""Prepares .gpu-carry/ for bench/gpu_device.sh on a GPU machine that reaches no package registry.

Such a machine (the device machines this project is lent: Python 3.12 on x86-64 whose python3 already holds a
CUDA build of torch and torchvision, and no network) gets, from this folder: the wheels of the project's other
dependencies that its image lacks, resolved here with pyproject.toml's requirements and the exact versions of
constraints.txt (ray with the `tune` extra only: the benchmark starts no dashboard), and Debian's dataset-fashion-mnist. Needs PyPI and
Debian's archive here (pip and apt-get), about 300 MB of downloads.

One device call carries at most 64 MiB of files, so they go into numbered folders of at most PART_BYTES each
(.gpu-carry/1, 2, ...), ray's wheel (79 MB) cut into pieces; gpu_device.sh joins the pieces and checks every
file against .gpu-carry/1/SHA256SUMS. Each folder travels in its own call, in order, one right after the other
(the machine keeps what came while it stays warm); the README's GPU section gives the calls.

    python bench/gpu_carry.py            # writes .gpu-carry/ (ignored by git) and prints the device calls
"""

import hashlib
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).parents[1]
CARRY = ROOT / ".gpu-carry"
PART_BYTES = 60_000_000  # a call's 64 MiB, less the working tree (about 1 MB) and a margin
PYTHON = "3.12"
PLATFORMS = ["manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_24_x86_64", "manylinux_2_27_x86_64",
             "manylinux_2_28_x86_64", "manylinux_2_31_x86_64", "manylinux_2_34_x86_64"]
# Already in the device image (its package list): not carried. torch and torchvision come from the image too.
IMAGE_HAS = set("""
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core cuda-pathfinder
cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock flatbuffers flax fonttools
formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna
imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver
lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe
matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals
networkx ninja numba numba-cuda numpy numpyro nvidia-ml-py onnx onnx-ir onnxruntime onnxscript opencv-python-headless
optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy
portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing pyproject-hooks
pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist python-dateutil
pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image scikit-learn scipy
seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six sortedcontainers statsmodels sympy
tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm tokenizers toolz torch
torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers treescope triton typer
typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp
""".split())


def project_name(wheel: Path) -> str:
    return re.sub(r"[-_.]+", "-", wheel.name.split("-")[0]).lower()


def requirements() -> list[str]:
    """pyproject.toml's dependencies the image lacks; ray without the dashboard's extra."""
    listed = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    wanted = []
    for line in listed:
        name = re.split(r"[\[<>=!~ ;]", line, maxsplit=1)[0].lower()
        if name in IMAGE_HAS:  # torch, torchvision, timm (whose torch pip would resolve to GBs of CUDA), numpy...
            continue
        wanted.append(re.sub(r"^ray\[[^\]]*\]", "ray[tune]", line))
    return wanted


def download(folder: Path) -> list[Path]:
    platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--python-version",
                    PYTHON, "--implementation", "cp", *platforms, "-c", str(ROOT / "constraints.txt"), "-d", str(folder),
                    *requirements()], check=True)
    subprocess.run(["apt-get", "download", "dataset-fashion-mnist"], cwd=folder, check=True)
    return sorted(folder.iterdir())


def main():
    shutil.rmtree(CARRY, ignore_errors=True)
    downloads = CARRY / "downloads"
    downloads.mkdir(parents=True)
    files = [f for f in download(downloads) if f.suffix == ".deb" or project_name(f) not in IMAGE_HAS]
    sums = [f"{hashlib.sha256(f.read_bytes()).hexdigest()}  {f.name}" for f in files]

    # Fill folders in order, largest files first; a file larger than what is left is cut into pieces.
    parts, room = [[]], PART_BYTES
    for f in sorted(files, key=lambda f: -f.stat().st_size):
        size = f.stat().st_size
        if size <= room:
            parts[-1].append((f.name, f.read_bytes()))
            room -= size
            continue
        data, index = f.read_bytes(), 0
        while data:
            if room < 1_000_000:
                parts.append([])
                room = PART_BYTES
            piece, data = data[:room], data[room:]
            parts[-1].append((f"{f.name}.part-{index:02d}", piece))
            room -= len(piece)
            index += 1
    for number, part in enumerate(parts, start=1):
        folder = CARRY / str(number)
        folder.mkdir()
        for name, data in part:
            (folder / name).write_bytes(data)
    (CARRY / "1" / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    shutil.rmtree(downloads)

    print(f"{len(files)} files in {len(parts)} folders under {CARRY.relative_to(ROOT)}/:")
    for number in range(1, len(parts) + 1):
        folder = CARRY / str(number)
        print(f"  {number}: {sum(p.stat().st_size for p in folder.iterdir()) / 1e6:.1f} MB")
    print("Device calls, one right after the other:")
    for number in range(1, len(parts)):
        print(f'  run(carry=[".gpu-carry/{number}"], command="ls .gpu-carry", timeout_s=60)')
    print(f'  run(carry=[".gpu-carry/{len(parts)}"], command="bash bench/gpu_device.sh", timeout_s=600)')


if __name__ == "__main__":
    main()
