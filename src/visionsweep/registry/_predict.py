"""`visionsweep predict`: a registered model over image files and folders, to a CSV."""

import csv
import sys
import tempfile
from pathlib import Path

import numpy as np

from visionsweep.data import IMAGE_SUFFIXES, decode_image
from visionsweep.record import MODEL_URI




def image_files(paths: list[str]) -> list[Path]:
    """The given files, and the images under the given folders (recursively, sorted).

    Raises FileNotFoundError for a path that does not exist and for a folder that holds no image file.
    """
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            inside = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not inside:
                raise FileNotFoundError(f"{path}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in it or below")
            found += inside
        elif path.exists():
            found.append(path)  # an unreadable file gets a row with its error
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    return found


def load_model(model_uri: str, tracking_uri: str, folder: str):
    """A registered model (models:/NAME@ALIAS) from this store, downloaded into `folder` and loaded,
    without changing MLflow's process-wide tracking URI."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
    match = MODEL_URI.fullmatch(model_uri.strip())
    try:
        if match and (match["alias"] or match["version"]):
            # Resolved here: MLflow resolves models:/ URIs in the process-wide registry, whatever the store.
            version = (client.get_model_version_by_alias(match["name"], match["alias"]) if match["alias"]
                       else client.get_model_version(match["name"], match["version"]))
            model_uri = client.get_model_version_download_uri(match["name"], version.version)
        local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=folder, tracking_uri=tracking_uri)
    except MlflowException as err:
        raise LookupError(f"--model {model_uri}: {err.message}") from None
    return mlflow.pyfunc.load_model(local)


def predict_files(model_uri: str, tracking_uri: str, files: list[Path], output, batch_size: int = 256):
    """Writes one CSV row per image file (from `image_files`): path, label(s), error, then one probability column
    per class.

    Returns (predicted, failures): a file that cannot be read gets its error in its row and in `failures`
    as (path, error); the others go on.
    """
    with tempfile.TemporaryDirectory() as folder:
        return _predict(load_model(model_uri, tracking_uri, folder), files, output, batch_size)


def _predict(model, files: list[Path], output, batch_size: int) -> tuple[int, list[tuple[Path, str]]]:
    from tqdm import tqdm
    meta = model.metadata.metadata or {}
    classes, size, channels = meta["classes"], meta["image_size"], meta["channels"]
    thresholds = np.asarray(meta["thresholds"]) if meta.get("multilabel") else None
    writer = csv.writer(output)
    writer.writerow(["path", "labels" if thresholds is not None else "label", "error", *(f"p_{c}" for c in classes)])
    failures = []
    with tqdm(total=len(files), unit="image", file=sys.stderr, disable=None) as progress:
        for start in range(0, len(files), batch_size):
            batch, images, errors = files[start : start + batch_size], [], {}
            for path in batch:
                try:
                    images.append(decode_image(path, size, channels))
                except Exception as err:  # noqa: BLE001 - any unreadable file becomes a row, not a crash
                    errors[path] = f"{type(err).__name__}: {err}"
            probs = iter(model.predict(np.stack(images)) if images else [])
            for path in batch:
                if path in errors:
                    writer.writerow([str(path), "", errors[path], *([""] * len(classes))])
                    continue
                row = next(probs)
                if thresholds is None:
                    label = classes[int(np.argmax(row))]
                else:
                    label = ";".join(c for c, p, t in zip(classes, row, thresholds) if p >= t)
                writer.writerow([str(path), label, "", *(f"{p:.6f}" for p in row)])
            failures += errors.items()
            progress.update(len(batch))
    return len(files) - len(failures), failures
