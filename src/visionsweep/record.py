"""The MLflow record of a sweep: every run tag, param, metric and artifact name visionsweep writes or reads.

One sweep is one MLflow parent run (kind `sweep`) with a nested run per trial (kind `trial`); each
`visionsweep ensemble` adds a nested run of kind `ensemble`, and with `--refit` first a nested run of kind
`refit` with a trial run per retrained configuration and seed. Whoever writes one of these names and whoever
reads it back (the resumed driver, the ensemble job, the report, the registry) take it from here.
The values of TAG_OUTCOME are those of `Outcome` (visionsweep.outcome: how a trial ended).
"""

import re

from visionsweep.outcome import Outcome

# --- every run -------------------------------------------------------------------------------------
TAG_PARENT = "mlflow.parentRunId"  # MLflow's own nesting: trial and ensemble runs name their sweep run
TAG_KIND = "visionsweep.kind"  # one of the kinds below
KIND_SWEEP = "sweep"
KIND_TRIAL = "trial"
KIND_ENSEMBLE = "ensemble"
KIND_LOST = "lost_trial"  # a trial run whose trial a dead driver started but Ray never recorded (set aside on resume)
KIND_REFIT = "refit"  # under a sweep run: the sweep's best configurations trained again, one trial run each

# --- the sweep run ---------------------------------------------------------------------------------
TAG_VERSION = "visionsweep.version"
TAG_DATA_FINGERPRINT = "visionsweep.data_fingerprint"  # resume refuses a dataset that changed
TAG_METRIC = "visionsweep.metric"  # search.metric: what trials are ranked by
TAG_MODE = "visionsweep.mode"  # max | min
TAG_SOURCE_NAME = "mlflow.source.name"
TAG_GIT_COMMIT = "mlflow.source.git.commit"
# Where the state to resume the sweep lives (orchestrator.SweepState)
TAG_TUNE_PATH = "visionsweep.tune_path"  # Ray Tune's experiment folder or URI
TAG_STUDY_NAME = "visionsweep.study_name"
TAG_STUDY_STORAGE = "visionsweep.optuna_storage"  # a journal file or database URL; empty: in memory
TAG_CONFIG_FOLDER = "visionsweep.config_folder"  # the sweep file's folder: resume looks for your code there too
PARAM_BAD_IMAGES = "data.bad_images"  # image files skipped as unreadable (the config's params are `flatten`ed beside it)
CONFIG_ARTIFACT = "config.yaml"  # the resolved config: what `resume` and the report read back
SPLIT_ARTIFACT = "split.npz"  # row indices of train/val/test (and folds), labels, classes
DATA_SUMMARY_ARTIFACT = "data_summary.json"  # what decoding found and converted
BAD_IMAGES_ARTIFACT = "bad_images.txt"  # one skipped file per line, with the reason
STUDY_ARTIFACT = "study.journal"  # the Optuna study, for the report's plots
REPORT_ARTIFACT = "report.html"


def trials_metric(outcome: Outcome) -> str:
    """The sweep run's count of trials that ended so."""
    return f"trials_{outcome.value}"


# --- a trial run -----------------------------------------------------------------------------------
TAG_MODEL = "visionsweep.model"  # the trial's model: a registered name, timm/NAME or pkg.module:function
TAG_TRIAL_ID = "visionsweep.trial_id"  # the Ray trial id: how a resumed driver finds a trial's run
TAG_OUTCOME = "visionsweep.outcome"  # an Outcome value, or killed
TAG_NODE = "visionsweep.node"  # the node it runs on now
TAG_NODES = "visionsweep.nodes"  # every node it ran on, comma-separated, in order
TAG_RESTARTS = "visionsweep.restarts"  # retries from its last checkpoint after its process or node died
TAG_PRUNED_AT_EPOCH = "visionsweep.pruned_at_epoch"
TAG_ERROR = "visionsweep.error"  # the end of the error; ERROR_ARTIFACT holds all of it
TAG_FAILURE_REASON = "visionsweep.failure_reason"  # its last line, e.g. "Diverged: train_loss is nan at epoch 3"
TAG_PREDICTIONS = "visionsweep.predictions"  # stored | none: whether the trial left predictions for the ensemble
TAG_NEVER_PREDICTED = "visionsweep.never_predicted"  # trial, ensemble or sweep (its best trial): classes given no test row
ERROR_ARTIFACT = "error.txt"
PREDICTIONS_ARTIFACT = "predictions.npz"  # val_probs, test_probs (best epoch), classes; no pickle
TRIAL_MODEL_FOLDER = "trained_model"  # the trained model (best validation epoch), as models.save_trained writes it:
WEIGHTS_FILE = "weights.pt"  # its state_dict
MODEL_SPEC_FILE = "model.json"  # its model name and params, image shape, classes, normalisation (models.ModelSpec)
MODEL_CODE_FOLDER = "code"  # a user's model: a copy of its code, to rebuild it anywhere
CAM_FOLDER = "gradcam"  # Grad-CAM of the trial's model: one PNG per class (label)
BEST_EPOCH_METRIC = "best_epoch"
TEST_PREFIX = "test_"  # test_<measure>: the best epoch's scores on the test rows


def best_metric(metric: str) -> str:
    """A trial's `metric` at its best validation epoch (and the sweep run's best of them)."""
    return f"best_{metric}"


def restart_error_artifact(restarts: int) -> str:
    """The error that made Ray retry the trial the `restarts`-th time."""
    return f"error-restart-{restarts}.txt"


# --- a refit run (kind refit, nested under its sweep; its trial runs nested under it) ----------------
# It carries the sweep's TAG_METRIC, TAG_MODE, TAG_DATA_FINGERPRINT and a copy of SPLIT_ARTIFACT, so its trials
# are ensembled as a sweep's are, and its own CONFIG_ARTIFACT (FIFO, the refit's epochs).
TAG_REFIT_OF = "visionsweep.refit_of"  # on a refit's trial run: the sweep's trial run whose configuration it trains

# --- an ensemble run -------------------------------------------------------------------------------
TAG_VOTING = "visionsweep.voting"
TAG_FINAL = "visionsweep.final"  # the name of the chosen ensemble
TAG_REFIT = "visionsweep.refit"  # the refit run whose trials it ensembles; absent: the sweep's own trials
ENSEMBLE_ARTIFACT = "ensemble.json"  # the chosen ensemble: members, weights, method, thresholds (promote reads it)
ENSEMBLE_TABLE_ARTIFACT = "ensemble_table.json"  # every method's scores (the report reads it)
ENSEMBLE_TABLE_TEXT_ARTIFACT = "ensemble_table.txt"
AGREEMENT_ARTIFACT = "agreement.npz"
SCORE_PLOT_ARTIFACT = "score_vs_k.png"

# --- a registered model version (`visionsweep promote`) --------------------------------------------
TAG_MEASURE = "visionsweep.measure"
TAG_TEST_SCORE = "visionsweep.test_score"
TAG_SOURCE = "visionsweep.source"  # trial | ensemble
MODEL_ARTIFACT = "registered_model"  # where the pyfunc goes in the source run's artifacts
# How a registered model is named on the command line: models:/NAME@ALIAS, models:/NAME/VERSION or models:/NAME
MODEL_URI = re.compile(r"models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>\d+))?")
