"""The ensemble job: every voting method over the members' stored predictions, one run under the sweep."""

import json
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from mlflow.entities import Metric

from visionsweep import metrics
from visionsweep.ensemble._members import Members
from visionsweep.ensemble.agreement import mean_off_diagonal, member_agreement
from visionsweep.ensemble.selection import BAG_ROUNDS, BAGS, Selector
from visionsweep.ensemble.voting import hard_vote, soft_vote
from visionsweep.record import (
    AGREEMENT_ARTIFACT, ENSEMBLE_ARTIFACT, ENSEMBLE_TABLE_ARTIFACT, ENSEMBLE_TABLE_TEXT_ARTIFACT, KIND_ENSEMBLE,
    PREDICTIONS_ARTIFACT, SCORE_PLOT_ARTIFACT, TAG_FINAL, TAG_KIND, TAG_NEVER_PREDICTED, TAG_PARENT, TAG_REFIT,
    TAG_VOTING,
    TEST_PREFIX,
)

DEFAULT_TOP_K = ["10%", "20%", "30%", "40%", "50%", "100%"]
CURVE_POINTS = 100  # values of k scored for the plot
FINAL_MEMBERS_SHOWN = 10  # the final ensemble's heaviest members listed in the printed table


@dataclass
class EnsembleTable:
    measure: str  # e.g. "accuracy"
    best_single: float  # test score of the member with the best validation score
    rows: list[dict]  # per top-k: {"k", "label", "members", "val_soft", "soft", "val_hard", "hard"} (soft/hard: test)
    # greedy, bagged and weighted: {"method", "members", "val", "held_out", "test"}; held_out: scored on each
    # validation half by the members fitted on the other (build_table)
    methods: list[dict] = field(default_factory=list)
    # the best held-out on validation: {"name", "method", "weights", "thresholds", "val", "held_out", "test",
    # "never_predicted"}
    final: dict = field(default_factory=dict)
    curve: dict = field(default_factory=dict)  # every k: {"k", "val_soft", "test_soft", "val_hard", "test_hard"}
    agreement: dict = field(default_factory=dict)  # mean pairwise disagreement / error correlation on the test rows
    matrices: dict = field(default_factory=dict, repr=False)  # agreement matrices (members x members)
    # the final ensemble's members, heaviest first: {"name", "family", "weight", "disagreement"} (disagreement: mean
    # share of test rows on which the member decides unlike each other final member)
    final_members: list[dict] = field(default_factory=list)
    run_id: str = ""
    sweep_run_id: str = ""  # the sweep the ensemble run is logged under
    refit_run_id: str = ""  # the refit whose trials are the members; empty: the sweep's own trials
    left_out: list[str] = field(default_factory=list)  # trial runs without stored predictions
    skipped: list[str] = field(default_factory=list)  # candidates left out for non-finite predictions

    def format(self) -> str:
        def cell(row, key):
            return f"{row[key]:.4f}" if key in row else "-"

        lines = [f"{'':<18} {'members':>8} {'val soft':>9} {'test soft':>9} {'val hard':>9} {'test hard':>9}"
                 f"   ({self.measure})"]
        for row in self.rows:
            lines.append(f"{'top ' + row['label']:<18} {row['members']:>8} {cell(row, 'val_soft'):>9} "
                         f"{cell(row, 'soft'):>9} {cell(row, 'val_hard'):>9} {cell(row, 'hard'):>9}")
        for row in self.methods:
            lines.append(f"{row['method']:<18} {row['members']:>8} {row['val']:>9.4f} {row['test']:>9.4f}"
                         f"   (held-out val {row['held_out']:.4f})")
        lines.append(f"{'best single':<18} {1:>8} {'':>9} {self.best_single:>9.4f}")
        if self.final:
            thresholds = "" if self.final["thresholds"] is None else f", thresholds {_short(self.final['thresholds'])}"
            lines.append(f"final (best held-out validation): {self.final['name']}: val {self.final['val']:.4f}, "
                         f"held-out val {self.final['held_out']:.4f}, test {self.final['test']:.4f}{thresholds}")
            if self.final.get("never_predicted"):
                lines.append(f"never predicted on test rows by the final ensemble: {', '.join(self.final['never_predicted'])}")
        if self.skipped:
            lines.append(f"left out, non-finite predictions: {', '.join(self.skipped)}")
        if self.agreement:
            lines.append("agreement on test rows: " + ", ".join(f"{k.replace('_', ' ')} {v:.3f}" for k, v in self.agreement.items()))
        if self.final_members:
            families = {}
            for member in self.final_members:
                families[member["family"] or "?"] = families.get(member["family"] or "?", 0) + 1
            lines.append(f"final members ({len(self.final_members)}; models: "
                         + ", ".join(f"{family} x{count}" for family, count in families.items()) + "):")
            lines.append(f"  {'member':<24} {'model':<18} {'weight':>7} {'disagrees':>9}   (share of test rows, "
                         "mean over the other final members)")
            for member in self.final_members[:FINAL_MEMBERS_SHOWN]:
                disagreement = "-" if member["disagreement"] is None else f"{member['disagreement']:.3f}"
                lines.append(f"  {member['name'][:24]:<24} {(member['family'] or '?')[:18]:<18} "
                             f"{member['weight']:>7.3f} {disagreement:>9}")
            if len(self.final_members) > FINAL_MEMBERS_SHOWN:
                lines.append(f"  ... {len(self.final_members) - FINAL_MEMBERS_SHOWN} more (ensemble_table.json)")
        if self.left_out:
            lines.append(f"left out, no stored predictions ({len(self.left_out)}): {', '.join(self.left_out)}")
        return "\n".join(lines)


def parse_top_k(value: str) -> tuple[float, bool]:
    """'5' -> (5, False); '10%' -> (10.0, True)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(%?)", value.strip())
    if not match or float(match.group(1)) <= 0 or (match.group(2) and float(match.group(1)) > 100):
        raise ValueError(f"--top-k {value!r}: expected a count (5) or a percentage up to 100% (10%)")
    return float(match.group(1)), bool(match.group(2))


def members_for(k: tuple[float, bool], available: int) -> int:
    amount, percent = k
    return max(1, min(available, round(available * amount / 100) if percent else int(amount)))


def build_table(
    members: Members, top_k: list[str] = DEFAULT_TOP_K, voting: str = "both", greedy_rounds: int = 50,
    thresholds: str = metrics.DEFAULT_THRESHOLD_METHOD,
) -> EnsembleTable:
    """Scores every method on the validation and test rows. Everything is chosen on validation only.

    The final ensemble is the candidate with the best held-out validation score. Greedy selection and fitted
    weights are fitted to the validation rows, so their score on those same rows flatters them (greedy picks
    whatever fixes a few rows, noise included) and would win the choice by overfitting. So the validation rows
    are split in two halves (validation_halves); each fitted method is fitted on one half and votes on the
    other, both ways round, and every row's held-out vote is scored once: two-fold cross-validation within the
    validation rows, the same rows and measure for every method. A top-k vote is chosen on the rows too (its
    members are those that score best there: with hundreds of candidates, partly by luck), so for its held-out
    score the members ranked on one half vote on the other (held_out_top_k). The chosen method's weights are
    then fitted on all validation rows. Out-of-bag scores were the alternative: free for the bagged
    ensemble, but greedy on all rows and the fitted weights have no out-of-bag rows, and refitting them per bag
    would cost ten fits each; two halves cost one more fit each (bagging none: its bags are drawn within the
    halves).
    """
    val, test = members.val_probs, members.test_probs
    y_val, y_test = members.val_labels, members.test_labels
    task, count = members.task, len(val)
    measure = task.primary_measure

    def score(probs, labels, cut=None):
        return task.scores(probs, labels, thresholds=cut)[measure]

    def tuned(val_probs):  # multi-label thresholds for weighted probabilities; None for multi-class
        return task.thresholds(val_probs, y_val, thresholds)

    def tuned_on(val_probs, mask):  # ... tuned on the rows of a 0/1 mask only
        return task.thresholds(val_probs[mask > 0], y_val[mask > 0], thresholds)

    sizes = {}
    for label in top_k:
        sizes.setdefault(members_for(parse_top_k(label), count), label)
    # The rows are points of the curve (multi-label: members centred on their own thresholds vote at 0.5).
    curve = score_curve(members, voting, extra=list(sizes))
    rows = []
    for size, label in sorted(sizes.items()):
        row = {"k": size, "label": label, "members": size}
        at = curve["k"].index(size)
        for method, key in (("soft", "soft"), ("hard", "hard")):
            if f"test_{method}" in curve:
                row.update({f"val_{key}": curve[f"val_{method}"][at], key: curve[f"test_{method}"][at]})
        rows.append(row)

    candidates = []  # (name, method, weights per member, thresholds, val score, held-out val score, test score)
    half = np.full(len(members.classes), 0.5, np.float32) if task.multilabel else None  # centred members vote at 0.5
    halves = validation_halves(len(y_val))
    held_out_votes = held_out_top_k(members, [row["k"] for row in rows], voting, halves)
    for at, row in enumerate(rows):
        weights = (np.arange(count) < row["k"]).astype(np.float64)
        for method, name in (("soft", "average"), ("hard", "hard")):
            if method in row:
                row[f"held_out_{method}"] = held_out_votes[method][at]
                candidates.append((f"{method} top {row['label']}", name, weights, half, row[f"val_{method}"],
                                   row[f"held_out_{method}"], row[method]))
    selector = Selector(val, y_val)
    fits = (  # each: (name, fit on the rows of a 0/1 mask, with a seed)
        (f"greedy ({greedy_rounds} rounds)", lambda mask, seed: selector.greedy(greedy_rounds, mask).astype(np.float64)),
        (f"bagged ({BAGS} bags)", lambda mask, seed: selector.bagged(BAGS // 2, BAG_ROUNDS, seed, mask)),
        ("weighted soft", lambda mask, seed: selector.fitted_weights(mask)),
    )
    methods = []
    for name, fit in fits:
        held_out = np.empty(val.shape[1:], np.float32)  # every row, voted by the members fitted on the other half
        fitted = []
        for part in (0, 1):
            mask = (halves == part).astype(np.int64)
            weights = fit(mask, part)
            fitted.append(weights / weights.sum())
            probs = soft_vote(val[weights > 0], weights[weights > 0])
            decided = task.decide(probs, tuned_on(probs, mask)) if task.multilabel else probs
            held_out[mask == 0] = decided[mask == 0]
        # Bagging's bags are drawn within each half, so the bagged ensemble of all rows is both halves' bags.
        weights = (fitted[0] + fitted[1]) / 2 if name.startswith("bagged") else fit(np.ones(len(y_val), np.int64), 2)
        used = weights > 0
        val_probs, test_probs = soft_vote(val[used], weights[used]), soft_vote(test[used], weights[used])
        cut = tuned(val_probs)
        methods.append({"method": name, "members": int(used.sum()), "val": score(val_probs, y_val, cut),
                        "held_out": score(held_out, y_val), "test": score(test_probs, y_test, cut)})
        candidates.insert(len(methods) - 1, (name, "average", weights, cut, methods[-1]["val"],
                                             methods[-1]["held_out"], methods[-1]["test"]))
    # The best held-out validation score (choose_final); on a tie, the earlier candidate: greedy, bagged, weighted,
    # then smaller top-k.
    name, method, weights, cut, val_score, held_out, test_score = max(candidates, key=lambda c: c[5])
    final = {"name": name, "method": method, "weights": weights / weights.sum(), "thresholds": cut,
             "val": val_score, "held_out": held_out, "test": test_score}
    final["never_predicted"] = metrics.never_predicted(final_predictions(members, final)["test_probs"],
                                                       members.classes, cut)

    agreement = member_agreement(test, y_test)
    summary = {"mean_pairwise_disagreement": mean_off_diagonal(agreement["disagreement"]),
               "mean_error_correlation": mean_off_diagonal(agreement["error_correlation"])}
    used = np.flatnonzero(final["weights"])
    within = agreement["disagreement"][np.ix_(used, used)]
    if len(used) > 1:
        summary["final_mean_pairwise_disagreement"] = mean_off_diagonal(within)
    families = members.families or [""] * count
    final_members = sorted(
        ({"name": members.names[i], "family": families[i], "weight": float(final["weights"][i]),
          "disagreement": float(within[j].sum() / (len(used) - 1)) if len(used) > 1 else None}
         for j, i in enumerate(used)),
        key=lambda member: -member["weight"])
    return EnsembleTable(measure, score(test[0], y_test), rows, methods, final, curve,
                         {k: v for k, v in summary.items() if not np.isnan(v)}, agreement, final_members=final_members)


def validation_halves(rows: int, seed: int = 0) -> np.ndarray:
    """0 or 1 per validation row: two halves of the rows in a seeded random order, for held-out scoring."""
    halves = np.arange(rows) % 2
    np.random.default_rng(seed).shuffle(halves)
    return halves


def final_predictions(members: Members, final: dict) -> dict[str, np.ndarray]:
    """The final ensemble's val and test scores, exactly as its registered model computes them."""
    used = final["weights"] > 0
    out = {}
    for part, probs in (("val_probs", members.val_probs), ("test_probs", members.test_probs)):
        if final["method"] == "hard":
            out[part] = hard_vote(probs[used], members.multilabel)
        else:
            out[part] = soft_vote(probs[used], final["weights"][used])
    return out


def score_curve(
    members: Members, voting: str = "both", points: int = CURVE_POINTS, extra: list[int] = (),
) -> dict[str, list[float]]:
    """Soft and hard voting scores of the top k members on validation and test, at up to `points` values
    of k spread over 1..members plus the `extra` ones (each the same decision soft_vote / hard_vote makes)."""
    count = len(members.val_probs)
    ks = sorted(set(np.linspace(1, count, min(points, count)).round().astype(int).tolist()) | set(extra))
    curve = {"k": ks}
    task = members.task
    measure = task.primary_measure
    for part, probs, labels in (("val", members.val_probs, members.val_labels),
                                ("test", members.test_probs, members.test_labels)):
        votes = top_k_votes(probs, ks, members.multilabel, voting)
        for method in ("soft", "hard"):
            if method in votes:
                curve[f"{part}_{method}"] = [task.scores(decided, labels)[measure] for decided in votes[method]]
    return curve


def top_k_votes(
    probs: np.ndarray, ks: list[int], multilabel: bool, voting: str = "both", order=None, rows=None,
) -> dict[str, list[np.ndarray]]:
    """The soft and hard votes of the first k members in `order` (default: as given) on `rows` (default: all),
    for each k of `ks` (ascending): {"soft": [scores per k], "hard": [...]}, each the decision soft_vote /
    hard_vote makes, added up one member at a time."""
    order = range(len(probs)) if order is None else order
    rows = slice(None) if rows is None else rows
    shape = probs[0, rows].shape
    index = np.arange(shape[0])
    total = np.zeros(shape, dtype=np.float64)
    counts = np.zeros(shape, dtype=np.float64)
    out = {"soft": [], "hard": []}
    wanted = set(ks)
    for k, member in enumerate(order, start=1):
        scores = probs[member, rows]
        total += scores
        if multilabel:
            counts += scores >= 0.5
        else:
            counts[index, scores.argmax(axis=1)] += 1
        if k not in wanted:
            continue
        if voting in ("soft", "both"):
            out["soft"].append((total / k).astype(np.float32))
        if voting in ("hard", "both"):
            if multilabel:
                decided = np.where(2 * counts == k, total >= 0.5 * k, 2 * counts > k)  # a tie goes by the mean
            else:
                decided = counts + total / k / 2  # counts first; the mean breaks ties
            out["hard"].append(decided.astype(np.float32))
    return {method: votes for method, votes in out.items() if votes}


def held_out_top_k(members: Members, ks: list[int], voting: str, halves: np.ndarray) -> dict[str, list[float]]:
    """Held-out validation scores of the top-k votes, {"soft": [per k], "hard": [...]}: the members ranked by
    their score on one half of the validation rows vote on the other half, both ways round. Ranking the members
    by their score on the rows that then score the vote would flatter a top-k vote as fitting flatters greedy."""
    task, val, labels = members.task, members.val_probs, members.val_labels
    measure = task.primary_measure
    held_out = {}
    for part in (0, 1):
        ranked_on, voted_on = np.flatnonzero(halves == part), np.flatnonzero(halves != part)
        member_scores = [task.scores(val[m, ranked_on], labels[ranked_on])[measure] for m in range(len(val))]
        order = np.argsort(-np.asarray(member_scores), kind="stable")  # ties: the sweep's ranking
        for method, votes in top_k_votes(val, ks, members.multilabel, voting, order, voted_on).items():
            decided = held_out.setdefault(method, [np.empty(val.shape[1:], np.float32) for _ in ks])
            for at, vote in enumerate(votes):
                decided[at][voted_on] = vote
    return {method: [task.scores(d, labels)[measure] for d in decided] for method, decided in held_out.items()}


def run_ensemble(
    client, sweep_run_id: str | None = None, top_k: list[str] = DEFAULT_TOP_K, voting: str = "both",
    greedy_rounds: int = 50, thresholds: str = metrics.DEFAULT_THRESHOLD_METHOD, model_uris: list[str] | None = None,
    refit_run_id: str | None = None,
) -> EnsembleTable:
    """Ensembles a sweep's trials (or the trials behind registered models, or with `refit_run_id` the trials of
    a refit of the sweep) and logs a run under the sweep."""
    from visionsweep.ensemble._members import load_members, registered_members, sweep_members, without_predictions

    trials_of = refit_run_id or sweep_run_id  # the run whose trial runs are the candidates
    runs, names = registered_members(client, model_uris) if model_uris else sweep_members(client, trials_of)
    members = load_members(client, runs, names)
    if refit_run_id:
        members.sweep_run_id = sweep_run_id  # logged under the sweep, beside its other ensembles
    started = time.perf_counter()
    table = build_table(members, top_k, voting, greedy_rounds, thresholds)
    table.left_out = [] if model_uris else without_predictions(client, trials_of)
    table.sweep_run_id = members.sweep_run_id
    table.refit_run_id = refit_run_id or ""
    compute_seconds = time.perf_counter() - started
    table.skipped = members.skipped
    sweep = client.get_run(members.sweep_run_id)
    tags = {TAG_PARENT: members.sweep_run_id, TAG_KIND: KIND_ENSEMBLE, TAG_VOTING: voting,
            TAG_FINAL: table.final["name"]}
    if refit_run_id:
        tags[TAG_REFIT] = refit_run_id
    if table.final["never_predicted"]:
        tags[TAG_NEVER_PREDICTED] = ", ".join(table.final["never_predicted"])
    run = client.create_run(sweep.info.experiment_id, run_name="ensemble", tags=tags)
    table.run_id = run.info.run_id
    status = "FAILED"
    try:
        _log(client, table, members, compute_seconds)
        status = "FINISHED"
    finally:
        client.set_terminated(table.run_id, status)
    return table


def _log(client, table: EnsembleTable, members: Members, compute_seconds: float) -> None:
    final = table.final
    used = np.flatnonzero(final["weights"])
    spec = {
        "name": final["name"],
        "method": final["method"],
        "members": [{"run_id": members.run_ids[i], "weight": float(final["weights"][i]),
                     "centre": members.member_thresholds[i]} for i in used],
        "thresholds": None if final["thresholds"] is None else [float(t) for t in final["thresholds"]],
        "measure": table.measure,
        "val_score": final["val"],
        "held_out_val_score": final["held_out"],  # what chose it (build_table)
        "test_score": final["test"],
        "classes": members.classes,
        "multilabel": members.multilabel,
        "never_predicted": final["never_predicted"],  # classes it gives no test row
    }
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        (folder / ENSEMBLE_TABLE_TEXT_ARTIFACT).write_text(table.format() + "\n")
        (folder / ENSEMBLE_TABLE_ARTIFACT).write_text(json.dumps({
            "measure": table.measure, "best_single": table.best_single, "rows": table.rows, "methods": table.methods,
            "final": spec, "curve": table.curve, "agreement": table.agreement,
            "members": members.run_ids, "member_names": members.names, "member_models": members.families,
            "final_members": table.final_members, "left_out": table.left_out,
        }, indent=1))
        (folder / ENSEMBLE_ARTIFACT).write_text(json.dumps(spec, indent=1))
        np.savez(folder / PREDICTIONS_ARTIFACT, **final_predictions(members, final), classes=np.array(members.classes))
        np.savez(folder / AGREEMENT_ARTIFACT, **table.matrices, members=np.array(members.run_ids))
        plot_curve(table, folder / SCORE_PLOT_ARTIFACT)
        client.log_artifacts(table.run_id, str(folder))
    now = int(time.time() * 1000)
    values = [Metric(f"{TEST_PREFIX}{table.measure}_best_single", table.best_single, now, 0),
              Metric(f"val_{table.measure}_final", final["val"], now, 0),
              Metric(f"{TEST_PREFIX}{table.measure}_final", final["test"], now, 0),
              Metric("load_seconds", members.load_seconds, now, 0),
              Metric("compute_seconds", compute_seconds, now, 0)]
    for row in table.rows:
        for method in ("soft", "hard"):
            if method in row:
                values.append(Metric(f"test_{table.measure}_{method}", row[method], now, row["k"]))
                values.append(Metric(f"val_{table.measure}_{method}", row[f"val_{method}"], now, row["k"]))
    for row in table.methods:
        key = row["method"].split(" ")[0]
        values += [Metric(f"val_{table.measure}_{key}", row["val"], now, 0),
                   Metric(f"test_{table.measure}_{key}", row["test"], now, 0)]
    values += [Metric(key, value, now, 0) for key, value in table.agreement.items()]
    client.log_batch(table.run_id, metrics=values)


def plot_curve(table: EnsembleTable, path: Path) -> None:
    """Score against k for soft and hard voting, with the greedy and weighted ensembles as lines."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    ks = table.curve["k"]
    for key, style in (("val_soft", "C0--"), ("test_soft", "C0-"), ("val_hard", "C1--"), ("test_hard", "C1-")):
        if key in table.curve:
            axes.plot(ks, table.curve[key], style, label=key.replace("_", " "))
    for color, row in zip(("C2", "C3", "C4"), table.methods):
        axes.axhline(row["test"], color=color, linestyle=":", label=f"{row['method']} test")
    axes.axhline(table.best_single, color="gray", linestyle=":", label="best single test")
    axes.set_xlabel("k (top members by validation score)")
    axes.set_ylabel(table.measure + (" (members at their own thresholds)" if table.measure == "micro_f1" else ""))
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _short(values) -> str:
    values = np.asarray(values)
    return f"{values[0]:.2f}" if np.all(values == values[0]) else "[" + " ".join(f"{v:.2f}" for v in values) + "]"
