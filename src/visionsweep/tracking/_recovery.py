"""Rebuilding the driver's view of a sweep from MLflow, for a driver that replaces one that died."""

import yaml

from visionsweep.outcome import Outcome
from visionsweep.record import (
    KIND_LOST, TAG_ERROR, TAG_KIND, TAG_NODES, TAG_OUTCOME, TAG_RESTARTS, TAG_TRIAL_ID, TEST_PREFIX, best_metric,
)
from visionsweep.tracking._store import trial_runs
from visionsweep.tracking._trial_logger import TrialRecord



def recover_records(client, sweep_run_id: str, metric: str) -> dict[str, TrialRecord]:
    """One TrialRecord per trial run of the sweep, keyed by Ray trial id (the `visionsweep.trial_id` tag).

    Runs that ended (FINISHED, FAILED) keep their outcome; runs left RUNNING or KILLED by the dead driver
    are reopened (outcome None), so the restored Tuner continues them in the same run.
    """
    records = {}
    for run in trial_runs(client, sweep_run_id):
        tags, run_id = run.data.tags, run.info.run_id
        record = TrialRecord(tags[TAG_TRIAL_ID], run_id, {k: yaml.safe_load(v) for k, v in run.data.params.items()})
        record.metric_by_epoch = {m.step: m.value for m in client.get_metric_history(run_id, metric)}
        record.epochs = max(record.metric_by_epoch, default=0)
        record.nodes = [node for node in tags.get(TAG_NODES, "").split(",") if node]
        record.restarts = int(tags.get(TAG_RESTARTS, 0))
        if run.info.status in ("FINISHED", "FAILED"):
            record.outcome = Outcome(tags[TAG_OUTCOME])
            record.best_val = run.data.metrics.get(best_metric(metric))
            record.test_scores = {k: v for k, v in run.data.metrics.items() if k.startswith(TEST_PREFIX)}
            record.error = tags.get(TAG_ERROR)
        elif run.info.status != "RUNNING":
            client.update_run(run_id, status="RUNNING")
        records[record.trial_id] = record
    return records


def set_aside_lost(client, records: dict[str, TrialRecord]) -> list[str]:
    """Called when a resumed sweep is over: trial runs still open belong to trials Ray never recorded
    (started by the dead driver after its last snapshot; Ray ran a replacement under a new id). They are
    closed KILLED and re-tagged, so the sweep's trial runs stay exactly the trials that ran. Returns their run ids."""
    lost = [record for record in records.values() if record.outcome is None]
    for record in lost:
        client.set_tag(record.run_id, TAG_KIND, KIND_LOST)
        client.set_tag(record.run_id, TAG_OUTCOME, Outcome.KILLED.value)
        client.set_terminated(record.run_id, "KILLED")
        del records[record.trial_id]
    return [record.run_id for record in lost]
