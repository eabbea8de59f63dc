#!/usr/bin/env bash
# Starts the MLflow tracking server that visionsweep logs to and that serves the UI.
#
# Local (one machine, zero set-up): sqlite store and artifacts beside it, bound to 127.0.0.1:5000.
#     mlflow/serve.sh
# Cluster head (see cluster.yaml): a PostgreSQL store, bound to the head's PRIVATE address only, so the
# workers reach it over the cluster network and you reach it through `ray attach ... -p 5000` / ssh -L.
#     MLFLOW_BACKEND_STORE_URI=postgresql+psycopg2://mlflow@127.0.0.1:5432/mlflow \
#     MLFLOW_HOST=10.0.0.12 MLFLOW_ARTIFACTS_DESTINATION=/data/mlartifacts mlflow/serve.sh
#
# The flags themselves live in one place, `visionsweep ui` (src/visionsweep/cli.py): one worker and no job
# runner, 2 processes and ~560 MB instead of ~13 processes (docs/stack.md).
set -euo pipefail
exec visionsweep ui \
  --tracking-uri "${MLFLOW_BACKEND_STORE_URI:-sqlite:///mlflow.db}" \
  --host "${MLFLOW_HOST:-127.0.0.1}" \
  --port "${MLFLOW_PORT:-5000}" \
  --artifacts-destination "${MLFLOW_ARTIFACTS_DESTINATION:-./mlartifacts}"
