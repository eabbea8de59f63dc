"""Opening a sqlite MLflow store: it is left in write-ahead-log mode, which the file keeps."""

import sqlite3

from support.stores import sqlite_store

from visionsweep import tracking


def journal_mode(path) -> str:
    connection = sqlite3.connect(path)
    try:
        return connection.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        connection.close()


def test_a_sqlite_store_opens_in_write_ahead_log_mode(tmp_path):
    uri = sqlite_store(tmp_path)
    assert journal_mode(tmp_path / "mlflow.db") == "delete"  # sqlite's default, as MLflow makes it
    client, experiment_id = tracking.connect(uri, "wal")
    run = client.create_run(experiment_id)
    client.set_terminated(run.info.run_id)
    assert journal_mode(tmp_path / "mlflow.db") == "wal"
    assert client.get_run(run.info.run_id).info.status == "FINISHED"


def test_a_busy_store_is_left_as_it_is(tmp_path):
    sqlite_store(tmp_path)
    holder = sqlite3.connect(tmp_path / "mlflow.db")
    holder.execute("BEGIN EXCLUSIVE")  # another process in the middle of a write
    try:
        tracking.write_ahead_log(tmp_path / "mlflow.db", wait_s=0.1)
        assert holder.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    finally:
        holder.rollback()
        holder.close()
