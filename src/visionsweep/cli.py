"""`visionsweep` command line: validate, run, submit, resume, ensemble, promote, predict, report, explain, ui, models, spaces, datasets."""

import argparse
import os
import re
import signal
import subprocess
import sys
import time
from urllib.parse import urlparse

from visionsweep.config import ConfigError, load_config, resolve_tracking_uri
from visionsweep.metrics import DEFAULT_THRESHOLD_METHOD, THRESHOLD_METHODS

UI_PORT = 5000
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a command ended by Ctrl-C


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="visionsweep", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    def with_config(command):
        command.add_argument("config", help="sweep YAML file")
        command.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                             help="override a setting, e.g. --set search.trials=8 (repeatable)")

    def with_tracking(command):
        command.add_argument("--tracking-uri", help="MLflow tracking URI (default: config, "
                             "then $MLFLOW_TRACKING_URI, then sqlite:///mlflow.db)")

    validate = commands.add_parser("validate", help="check a sweep file; exit 2 with the reason when it is wrong")
    with_config(validate)

    run = commands.add_parser("run", help="run a sweep")
    with_config(run)
    with_tracking(run)
    run.add_argument("--storage-path", help="where Ray Tune keeps trial checkpoints (default ~/ray_results)")
    run.add_argument("--address", help="an existing Ray cluster: auto or ray://HOST:10001 (default: local)")
    run.add_argument("--verbose", action="store_true", help="show Ray's own progress tables and worker logs")

    submit = commands.add_parser("submit", help="run a sweep on a Ray cluster as a job (config and code uploaded)")
    with_config(submit)
    submit.add_argument("--address", required=True, help="the cluster's job server, e.g. http://127.0.0.1:8265")
    submit.add_argument("--tracking-uri", help="MLflow tracking URI as seen from the cluster (default: config, "
                        "then the cluster's $MLFLOW_TRACKING_URI)")
    submit.add_argument("--storage-path", help="checkpoint storage as seen from the cluster (default: config)")
    submit.add_argument("--follow", action="store_true", help="print the job's log until it ends")

    resume = commands.add_parser("resume", help="take over a sweep whose driver died (Tuner, Optuna study, MLflow runs)")
    resume.add_argument("sweep", help="the sweep's MLflow parent run id, or an experiment name for its latest sweep")
    with_tracking(resume)
    resume.add_argument("--address", help="the Ray cluster: auto or ray://HOST:10001 (default: local)")
    resume.add_argument("--verbose", action="store_true", help="show Ray's own progress tables and worker logs")

    ensemble = commands.add_parser("ensemble", help="vote over the top-k trials of a sweep, or over registered models")
    ensemble.add_argument("--experiment", help="the sweep's MLflow experiment (its `name`)")
    ensemble.add_argument("--sweep", help="the sweep's parent run id (default: the experiment's latest sweep)")
    ensemble.add_argument("--members", nargs="+", metavar="MODEL_URI",
                          help="instead of a sweep: models:/NAME@ALIAS, models:/NAME/VERSION or models:/NAME (all versions)")
    ensemble.add_argument("--top-k", nargs="+", default=["10%", "20%", "30%", "40%", "50%", "100%"],
                          help="member counts or percentages, e.g. 1 5 10%%")
    ensemble.add_argument("--voting", choices=["soft", "hard", "both"], default="both")
    ensemble.add_argument("--greedy-rounds", type=int, default=50, help="rounds of greedy selection (Caruana)")
    ensemble.add_argument("--thresholds", choices=THRESHOLD_METHODS, default=DEFAULT_THRESHOLD_METHOD,
                          help="multi-label decisions: 0.5, or tuned on validation (one, or one per class)")
    ensemble.add_argument("--refit", type=int, metavar="N",
                          help="first train the sweep's N best configurations again to the full epoch budget, and "
                               "vote over those (default: the sweep file's final.refit, 0)")
    ensemble.add_argument("--seeds", type=int, metavar="M",
                          help="with --refit: models per configuration, each of a new seed (default: final.seeds, 1)")
    ensemble.add_argument("--storage-path", help="with --refit: where Ray Tune keeps its checkpoints "
                                                 "(default: the sweep's storage.checkpoints, else ~/ray_results)")
    ensemble.add_argument("--address", help="with --refit: an existing Ray cluster (default: local)")
    with_tracking(ensemble)

    promote = commands.add_parser("promote", help="register a trial's model or an ensemble behind a gated alias")
    source = promote.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", help="a trial's MLflow run id")
    source.add_argument("--ensemble", help="an ensemble's MLflow run id (from `visionsweep ensemble`)")
    promote.add_argument("--name", required=True, help="the registered model's name")
    promote.add_argument("--alias", default="champion")
    promote.add_argument("--force", action="store_true", help="promote even when the alias holder scored higher on test")
    with_tracking(promote)

    predict = commands.add_parser("predict", help="predict image files or folders with a registered model, to CSV")
    predict.add_argument("--model", required=True, help="models:/NAME@ALIAS (or any MLflow model URI)")
    predict.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders (searched recursively)")
    predict.add_argument("--output", default="predictions.csv", help="CSV file to write (- for stdout)")
    predict.add_argument("--batch-size", type=int, default=256, help="images per forward pass")
    with_tracking(predict)
    report = commands.add_parser("report", help="write a sweep's HTML report and log it to the sweep's run")
    report.add_argument("--sweep", help="the sweep's parent run id (default: the latest sweep of --experiment)")
    report.add_argument("--experiment", help="the sweep's MLflow experiment (its `name`)")
    report.add_argument("--output", help="where to write the page (default: report-RUNID.html here)")
    report.add_argument("--cam-run", help="the trial run whose class activation maps the page shows (default: the "
                                          "final ensemble's best member, or the best trial)")
    report.add_argument("--cam-layer", help="the model layer for those maps (default: found by inspection)")
    with_tracking(report)
    explain = commands.add_parser("explain", help="class activation maps (Grad-CAM) of a trial's model on its test images")
    explain.add_argument("--run", required=True, help="the trial's MLflow run id")
    explain.add_argument("--layer", help="the layer, as named in model.named_modules() (default: the last one with "
                                         "a feature map larger than 1x1)")
    explain.add_argument("--output", help="also write the PNGs into this folder (default: explain-RUNID)")
    with_tracking(explain)

    ui = commands.add_parser("ui", help="serve the MLflow UI on 127.0.0.1")
    with_tracking(ui)
    ui.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    ui.add_argument("--port", type=int, default=UI_PORT)
    ui.add_argument("--artifacts-destination", help="where the server stores uploaded artifacts")

    models = commands.add_parser("models", help="list registered models and their parameters (or timm's models)")
    models.add_argument("--timm", metavar="PATTERN", help="list timm's models matching a pattern, e.g. 'resnet*' "
                        "(use them as model: timm/NAME)")
    commands.add_parser("spaces", help="list named search spaces (compose them: space: [cnn_architecture, sgd])")
    commands.add_parser("datasets", help="list registered datasets")

    args = parser.parse_args(argv)
    # A bar per downloaded artifact drowns the ensemble table.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        return COMMANDS[args.command](args)
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2
    except Exception as err:
        message = failure_line(err)
        if message is None:  # a bug: its traceback is wanted
            raise
        print(f"error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # a second Ctrl-C: what was open is closed killed on the way out (run, resume)
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def failure_line(err: Exception) -> str | None:
    """One line for a failure a person can act on: an MLflow server that does not answer, something looked up
    that is not there, an error MLflow reports. None for anything else."""
    unreachable = unreachable_server(err)
    if unreachable:
        server, reason = unreachable
        return (f"cannot reach the MLflow server at {server} ({reason}); start it (visionsweep ui serves one), or "
                "give the right --tracking-uri (or $MLFLOW_TRACKING_URI)")
    if isinstance(err, LookupError) and not isinstance(err, (KeyError, IndexError)):
        return str(err.args[0]) if err.args else type(err).__name__
    mlflow_exceptions = sys.modules.get("mlflow.exceptions")
    if mlflow_exceptions and isinstance(err, mlflow_exceptions.MlflowException):
        return f"MLflow: {err.message.strip().splitlines()[0]}"
    return None


def unreachable_server(err: BaseException) -> tuple[str, str] | None:
    """(address, reason) when a failed connection to an HTTP tracking server caused `err`: MLflow raises its
    own exception after its retries, with the connection error as context."""
    requests = sys.modules.get("requests")
    seen = set()
    while requests and err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, (requests.ConnectionError, requests.Timeout)):
            url = urlparse(err.request.url) if getattr(err, "request", None) is not None else None
            errno = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(err))
            reason = errno[1].strip() if errno else "timed out" if isinstance(err, requests.Timeout) else "no connection"
            return (f"{url.scheme}://{url.netloc}" if url else "the tracking URI"), reason
        err = err.__cause__ or err.__context__
    return None


def cmd_validate(args) -> int:
    """The config, then the data as listed (no image decoded) against the task and the split, then this machine."""
    from visionsweep import data
    from visionsweep.task import Task

    config = load_config(args.config, args.set)
    started = time.perf_counter()
    listing = data.listing(config.data)
    config.check_task(Task.of(listing.labels, listing.classes))
    data.check_split(listing.labels, listing.classes, config.data.val_fraction, config.data.test_fraction,
                     config.data.folds, listing.test_rows)
    seconds = time.perf_counter() - started
    trials = (f"{sum(map(len, config.search.values.values()))} coordinate trials at most"
              if config.search.strategy == "coordinate" else f"{config.search.trials} trials")
    repeats = f" x {config.search.repeats} seeds" if config.search.repeats > 1 else ""
    what = "model " + " | ".join(config.model_choices)
    if config.trainable:  # your own training function must import here as it will in the trials
        from visionsweep.trainables import load_trainable

        load_trainable(config.trainable, config.folder)
        what = f"training function {config.trainable}"
    print(f"{args.config}: ok ({trials}{repeats} of {what} on {config.data.dataset})")
    rows = f"{len(listing.files)} files" if listing.files else f"{len(listing.labels)} rows"
    given = f", of which {len(listing.test_rows)} the given test set" if listing.test_rows is not None else ""
    kind = f"multi-label, {len(listing.classes)} labels" if listing.multilabel else f"multi-class, {len(listing.classes)} classes"
    how = "listed in {:.1f} s, not decoded" if listing.files else "loaded in {:.1f} s"
    print(f"data ({listing.layout}): {rows}{given}; {kind}; {how.format(seconds)}")
    print("  rows per " + ("label" if listing.multilabel else "class") + ": "
          + ", ".join(f"{name} {count}" for name, count in listing.counts().items()))
    for shortfall in local_shortfalls(config.resources):
        print(f"warning: {shortfall}; a local `visionsweep run` would start no trial (fine for a cluster "
              "that has them: visionsweep submit)", file=sys.stderr)
    return 0


def local_shortfalls(resources) -> list[str]:
    """What this machine lacks for one trial of `resources`: a local Ray would wait for it forever."""
    import torch

    shortfalls = []
    cores = len(os.sched_getaffinity(0))
    if resources.cpu > cores:
        shortfalls.append(f"resources.cpu {resources.cpu:g} per trial, but this machine has {cores} CPU cores")
    gpus = torch.cuda.device_count()
    if resources.gpu > gpus:
        shortfalls.append(f"resources.gpu {resources.gpu:g} per trial, but this machine has {gpus or 'no'} "
                          f"GPU{'' if gpus == 1 else 's'} (torch.cuda.device_count() = {gpus})")
    return shortfalls


def cmd_run(args) -> int:
    from visionsweep import api

    config = api.as_config(args.config, args.set)  # fails here, before Ray starts
    if not (args.address or os.environ.get("RAY_ADDRESS")):  # a new local Ray: it has this machine only
        shortfalls = local_shortfalls(config.resources)
        if shortfalls:
            raise ConfigError("; ".join(shortfalls) + ": no trial could start here; lower them, or run on a "
                              "cluster (visionsweep submit, or run --address)")
    result = api.run(config, tracking_uri=args.tracking_uri, storage_path=args.storage_path, address=args.address,
                     verbose=args.verbose)
    return report_sweep(config, result.sweep, result.tracking_uri)


def report_sweep(config, result, uri) -> int:
    from visionsweep.outcome import Outcome

    counts = ", ".join(f"{result.count(o)} {o.value}" for o in Outcome)
    print(f"\nsweep {config.name!r} {result.status.lower()} in {result.wall_seconds:.1f} s: "
          f"{len(result.records)} trials ({counts})")
    best = result.best(config.search.mode)
    if best:
        scores = ", ".join(f"{k} {v:.4f}" for k, v in best.test_scores.items())
        print(f"best trial {best.trial_id} (MLflow run {best.run_id}): {config.search.metric} {best.best_val:.4f}, {scores}")
        if best.never_predicted:
            print(f"  never predicted on test rows (F1 0): {', '.join(best.never_predicted)}")
        print("  " + ", ".join(f"{k}={_short(v)}" for k, v in best.params.items()))
    share = result.mlflow_seconds / result.wall_seconds
    print(f"MLflow calls: {result.mlflow_seconds:.1f} s ({share:.1%} of wall time), of which the sweep waited "
          f"{result.mlflow_wait_seconds:.1f} s; sweep run {result.sweep_run_id}")
    print(f"ensemble: visionsweep ensemble --experiment {config.name} --tracking-uri {uri}")
    print(f"browse:   visionsweep ui --tracking-uri {uri}   then open http://127.0.0.1:{UI_PORT}")
    if result.status == "KILLED":
        print(f"interrupted: the sweep and its cut-short trials are marked killed; continue them with "
              f"visionsweep resume {result.sweep_run_id} --tracking-uri {uri}", file=sys.stderr)
        return EXIT_INTERRUPTED
    if result.records and all(r.outcome is Outcome.FAILED for r in result.records):
        first = result.records[0]
        print(f"\nerror: every trial failed; the first, trial {first.trial_id} (MLflow run {first.run_id}):\n"
              f"{(first.error or '(no error text)').rstrip()}", file=sys.stderr)
        return 1
    return 0


def cmd_submit(args) -> int:
    config = load_config(args.config, args.set)
    from visionsweep.orchestrator import submit_sweep

    _, status = submit_sweep(config, args.address, args.tracking_uri, args.storage_path, follow=args.follow)
    if status is None:
        return 0
    print(f"job {status.value.lower()}")
    return 0 if status == "SUCCEEDED" else 1


def cmd_resume(args) -> int:
    from visionsweep.orchestrator import resume_sweep

    uri = resolve_tracking_uri(args.tracking_uri)
    config, result = resume_sweep(args.sweep, uri, address=args.address, verbose=args.verbose)
    return report_sweep(config, result, uri)


def cmd_ensemble(args) -> int:
    from visionsweep import api

    table = api.ensemble(args.sweep, experiment=args.experiment, members=args.members, top_k=args.top_k,
                         voting=args.voting, greedy_rounds=args.greedy_rounds, thresholds=args.thresholds,
                         tracking_uri=args.tracking_uri, refit=args.refit, seeds=args.seeds,
                         storage_path=args.storage_path, address=args.address)
    uri = resolve_tracking_uri(args.tracking_uri)
    source = f"refit {table.refit_run_id} of sweep {table.sweep_run_id}" if table.refit_run_id else \
        " ".join(args.members) if args.members else f"sweep {table.sweep_run_id}"
    print(f"ensemble of {source} (run {table.run_id}):")
    print(table.format())
    print(f"register it: visionsweep promote --ensemble {table.run_id} --name NAME --tracking-uri {uri}")
    return 0


def cmd_promote(args) -> int:
    from visionsweep import api, registry

    try:
        version, candidate = api.promote(run=args.run, ensemble=args.ensemble, name=args.name, alias=args.alias,
                                         force=args.force, tracking_uri=args.tracking_uri)
    except registry.GateRefused as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"registered {args.name} version {version.version} ({candidate.kind} run {candidate.source_run_id}, "
          f"test {candidate.measure} {candidate.test_score:.4f}) as models:/{args.name}@{args.alias}")
    return 0


def cmd_predict(args) -> int:
    from visionsweep import api

    predicted, failures = api.predict(args.model, args.paths, output=args.output, batch_size=args.batch_size,
                                      tracking_uri=args.tracking_uri)
    where = "" if args.output == "-" else f" to {args.output}"
    print(f"{predicted} images predicted, {len(failures)} unreadable{where}", file=sys.stderr)
    return 0


def cmd_report(args) -> int:
    if not (args.sweep or args.experiment):
        raise ConfigError("report: give --sweep RUN_ID or --experiment NAME (its latest sweep)")
    from visionsweep import tracking
    from visionsweep.record import REPORT_ARTIFACT
    from visionsweep.report import write_report

    started = time.perf_counter()
    client = tracking.TimedClient(resolve_tracking_uri(args.tracking_uri))
    sweep = args.sweep or tracking.latest_sweep(client, args.experiment)
    tracking.sweep_run(client, sweep)  # a clear error for an id of no run, or of a trial
    path = write_report(client, sweep, args.output, args.cam_run, args.cam_layer)
    print(f"report of sweep {sweep} in {time.perf_counter() - started:.1f} s, also logged to that run as {REPORT_ARTIFACT}:")
    print(path)
    return 0


def cmd_explain(args) -> int:
    from visionsweep import tracking
    from visionsweep.report import CAM_FOLDER, explain_run

    client = tracking.TimedClient(resolve_tracking_uri(args.tracking_uri))
    output = args.output or f"explain-{args.run[:8]}"
    explanation, logged = explain_run(client, args.run, args.layer, output)
    print(f"Grad-CAM at layer {explanation.layer}: {len(logged)} images in {output}/, also logged to run "
          f"{args.run} under {CAM_FOLDER}/")
    return 0


def cmd_ui(args) -> int:
    uri = resolve_tracking_uri(args.tracking_uri)
    command = server_command(uri, args.host, args.port, args.artifacts_destination)
    print(f"MLflow UI for {uri} at http://{args.host}:{args.port}  (Ctrl-C stops it)", flush=True)
    # The server and its workers in a process group of their own, stopped together when this process is told to
    # stop, by Ctrl-C or by a signal to its PID alone (a service manager's SIGTERM).
    server = subprocess.Popen(command, env=server_environment(), start_new_session=True)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM, too, raises KeyboardInterrupt
    try:
        return server.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        stop_process_group(server)


def stop_process_group(process: subprocess.Popen, grace_s: float = 10) -> None:
    """SIGTERM to the process's group; after its leader ended (or `grace_s` seconds), SIGKILL to what is left."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, signum)
        except ProcessLookupError:  # the whole group is gone
            return
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            pass


def server_command(uri: str, host: str, port: int, artifacts_destination: str | None = None) -> list[str]:
    """`mlflow server` with low-memory settings: one worker (docs/stack.md: 2 processes, ~560 MB, not 13)."""
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri,
               "--host", host, "--port", str(port), "--workers", "1"]
    if artifacts_destination:
        command += ["--artifacts-destination", artifacts_destination]
    return command


def server_environment() -> dict[str, str]:
    return {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def cmd_models(args) -> int:
    from visionsweep import models

    if args.timm:
        found = models.timm_names(args.timm)
        print("\n".join(found) if found else f"no timm model matches {args.timm!r}")
        return 0
    for name in models.names():
        params = ", ".join(f"{k}={v!r}" for k, v in models.parameters(name).items())
        per_layer = ", ".join(f"{kind}{{i}}.{field}" for kind, fields in models.layer_parameters(name).items()
                              for field in fields)
        print(f"{name}: {params}" + (f"; per layer: {per_layer}" if per_layer else ""))
    print("\nalso: timm/NAME, any timm model (visionsweep models --timm PATTERN lists them), and your own "
          "model as pkg.module:function")
    return 0


def cmd_spaces(args) -> int:
    from visionsweep import search_spaces

    for name in search_spaces.names():
        named = search_spaces.get(name)
        fits = ", ".join(named.models) if named.models else "any model"
        print(f"{name}: {named.description} ({fits})")
        for parameter, distribution in named.space.items():
            print(f"    {parameter}: {distribution}")
    return 0


def cmd_datasets(args) -> int:
    from visionsweep import data

    print("\n".join(data.names()))
    return 0


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


COMMANDS = {
    "validate": cmd_validate,
    "run": cmd_run,
    "submit": cmd_submit,
    "resume": cmd_resume,
    "ensemble": cmd_ensemble,
    "promote": cmd_promote,
    "predict": cmd_predict,
    "report": cmd_report,
    "explain": cmd_explain,
    "ui": cmd_ui,
    "models": cmd_models,
    "spaces": cmd_spaces,
    "datasets": cmd_datasets,
}

if __name__ == "__main__":
    sys.exit(main())
