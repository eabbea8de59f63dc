"""One HTML page per sweep that answers "what worked and why", built from MLflow alone (plus the test images).

    from visionsweep import report, tracking
    client = tracking.TimedClient("sqlite:///mlflow.db")
    path = report.write_report(client, tracking.latest_sweep(client, "digits-demo"))
"""

from pathlib import Path

from visionsweep.report._collect import SweepFacts, asha_rungs, collect
from visionsweep.report._explain import (
    CAM_FOLDER,
    Explanation,
    explain,
    explain_run,
    log_explanation,
    write_explanation,
)
from visionsweep.report._page import render
from visionsweep.record import REPORT_ARTIFACT
from visionsweep.tracking import log_bytes


def write_report(client, sweep_run_id: str, output: str | Path | None = None, cam_run: str | None = None,
                 cam_layer: str | None = None) -> Path:
    """Writes the report of sweep `sweep_run_id` to `output` and logs it to the sweep run as report.html; the
    class activation maps go to the explained trial's run as gradcam/<class>.png (see `collect` for cam_*)."""
    facts = collect(client, sweep_run_id, cam_run, cam_layer)
    page = render(facts).encode()
    if facts.explanation is not None:
        log_explanation(client, facts.explanation, facts.classes)
    path = Path(output or f"report-{sweep_run_id[:8]}.html").absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(page)
    log_bytes(client, sweep_run_id, REPORT_ARTIFACT, page)
    return path


__all__ = [
    "CAM_FOLDER", "Explanation", "SweepFacts", "asha_rungs", "collect", "explain", "explain_run",
    "log_explanation", "render", "write_explanation", "write_report",
]
