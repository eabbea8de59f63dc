"""A new, empty MLflow sqlite store for a test, in milliseconds: MLflow builds a new store's tables (its schema
migrations) in 2-8 s on 2 cores, so one store is built per session and each test gets a copy of it."""

import functools
import shutil
import tempfile
from pathlib import Path

from mlflow.tracking import MlflowClient


@functools.cache
def _empty_store() -> Path:
    path = Path(tempfile.mkdtemp(prefix="visionsweep-empty-store-")) / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()  # builds the tables
    return path


def sqlite_store(folder) -> str:
    """The URI of `folder`/mlflow.db, a copy of an empty store unless the file is there already."""
    path = Path(folder) / "mlflow.db"
    if not path.exists():
        shutil.copyfile(_empty_store(), path)
    return f"sqlite:///{path}"
