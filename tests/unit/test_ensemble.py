"""Greedy selection, fitted weights, thresholds, agreement and the table, on small hand-checked matrices."""

import numpy as np
import pytest

from visionsweep import metrics
from visionsweep.ensemble import (
    Members,
    bagged_selection,
    build_table,
    fit_weights,
    greedy_selection,
    hard_vote,
    member_agreement,
    soft_vote,
)
from visionsweep.ensemble._job import held_out_top_k, score_curve, validation_halves
from visionsweep.ensemble.selection import Selector


def two_class(class0):
    """Members' probabilities from their class-0 probability per row: (members, rows, 2)."""
    class0 = np.asarray(class0, dtype=np.float32)
    return np.stack([class0, 1 - class0], axis=-1)


def test_greedy_picks_the_member_that_fixes_the_most_rows():
    # labels 0 0 1 1; each member alone is right on 3 of 4 rows.
    probs = two_class([[0.9, 0.8, 0.4, 0.6], [0.6, 0.3, 0.3, 0.2], [0.2, 0.9, 0.45, 0.45]])
    labels = np.array([0, 0, 1, 1])
    # Round 1: a three-way tie goes to the first member. Round 2: A+B is right on all four rows
    # (A+C still misses row 3). Round 3 adds A again (still 4/4), but the best prefix ends at round 2.
    assert greedy_selection(probs, labels, rounds=1).tolist() == [1, 0, 0]
    assert greedy_selection(probs, labels, rounds=3).tolist() == [1, 1, 0]


def test_greedy_selects_with_replacement():
    # labels 0 1. A (0.6 for class 0 on both rows) and B (0.35, 0.0) are each right on one row, and so is
    # A+B (row 0: 0.95 vs 1.05). Only A counted twice plus B gets both rows (row 0: 1.55 vs 1.45).
    probs = two_class([[0.6, 0.6], [0.35, 0.0]])
    labels = np.array([0, 1])
    assert greedy_selection(probs, labels, rounds=2).tolist() == [1, 0]  # 1/2 throughout: the first pick
    assert greedy_selection(probs, labels, rounds=3).tolist() == [2, 1]
    assert greedy_selection(probs, labels, rounds=6).tolist() == [2, 1]  # later rounds do not beat round 3


def naive_greedy(probs, labels, rounds):
    """Recomputes every candidate's score from scratch: the definition the fast version must match."""
    multilabel = labels.ndim == 2
    picks, history = [], []
    for _ in range(rounds):
        scores = []
        for member in range(len(probs)):
            mean = probs[picks + [member]].mean(axis=0)
            if multilabel:
                predicted, truth = mean >= 0.5, labels.astype(bool)
                tp, wrong = (predicted & truth).sum(), (predicted != truth).sum()
                scores.append(2 * tp / (2 * tp + wrong) if tp + wrong else 1.0)
            else:
                scores.append(np.mean(mean.argmax(axis=1) == labels))
        picks.append(int(np.argmax(scores)))
        history.append(max(scores))
    return np.bincount(picks[: int(np.argmax(history)) + 1], minlength=len(probs))


@pytest.mark.parametrize("multilabel", [False, True])
def test_greedy_matches_the_naive_definition(multilabel):
    rng = np.random.default_rng(7)
    members, rows, classes = 9, 300, 4
    if multilabel:
        labels = (rng.random((rows, classes)) < 0.4).astype(np.uint8)
        probs = np.clip(labels * 0.35 + rng.random((members, rows, classes)) * 0.65, 0, 1).astype(np.float32)
    else:
        labels = rng.integers(0, classes, rows)
        logits = rng.normal(size=(members, rows, classes))
        logits[:, np.arange(rows), labels] += rng.uniform(0.2, 1.5, (members, 1))
        probs = (np.exp(logits) / np.exp(logits).sum(axis=2, keepdims=True)).astype(np.float32)
    for rounds in (1, 5, 15):
        np.testing.assert_array_equal(greedy_selection(probs, labels, rounds), naive_greedy(probs, labels, rounds))


def test_greedy_with_row_weights_is_greedy_on_the_repeated_rows():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 3, 80)
    probs = rng.dirichlet(np.ones(3), size=(7, 80)).astype(np.float32)
    counts = rng.integers(0, 3, 80)  # a bootstrap sample's counts: rows drawn 0, 1 or 2 times
    repeated = np.repeat(np.arange(80), counts)
    np.testing.assert_array_equal(Selector(probs, labels).greedy(12, counts),
                                  naive_greedy(probs[:, repeated], labels[repeated], 12))


def one_signal_among_noise(rows, rng, noise=30):
    """Member 0 is right on about 73% of rows; 30 members vote at random near 0.5 (two classes)."""
    labels = rng.integers(0, 2, rows)
    p_true = np.clip(0.65 + rng.normal(0, 0.25, rows), 0.01, 0.99)
    class0 = np.concatenate([np.where(labels == 0, p_true, 1 - p_true)[None],
                             0.5 + rng.uniform(-0.2, 0.2, (noise, rows))])
    return two_class(class0), labels


def test_bagging_overfits_the_validation_rows_less_than_greedy():
    rng = np.random.default_rng(1)
    (val, y_val), (test, y_test) = one_signal_among_noise(200, rng), one_signal_among_noise(5000, rng)

    def accuracy(weights, probs, labels):
        return np.mean(soft_vote(probs, weights).argmax(axis=1) == labels)

    greedy = greedy_selection(val, y_val, 50).astype(np.float64)
    bagged = bagged_selection(val, y_val, bags=10, rounds=20)
    assert bagged.sum() == pytest.approx(1)
    # Greedy adds noise members that happen to fix validation rows: 9 points above its test accuracy.
    greedy_gap = accuracy(greedy, val, y_val) - accuracy(greedy, test, y_test)
    bagged_gap = accuracy(bagged, val, y_val) - accuracy(bagged, test, y_test)
    assert greedy_gap > 0.05 and bagged_gap < greedy_gap / 2
    assert accuracy(bagged, test, y_test) > accuracy(greedy, test, y_test)
    assert bagged[0] == bagged.max()  # the one informative member weighs most


@pytest.mark.parametrize("seed", range(4))
def test_final_choice_on_held_out_halves_does_not_fall_for_greedy(seed):
    rng = np.random.default_rng(seed)
    (val, y_val), (test, y_test) = one_signal_among_noise(500, rng), one_signal_among_noise(5000, rng)
    ids = [f"run{i}" for i in range(len(val))]
    table = build_table(Members(ids, ids, val, test, y_val, y_test, ["0", "1"], [None] * len(ids), "sweep"),
                        ["1", "100%"], greedy_rounds=50)
    greedy = table.methods[0]
    # Greedy has the best score on the rows it was fitted to: chosen by that score, it would be final.
    assert greedy["method"].startswith("greedy")
    assert greedy["val"] == max([c["val"] for c in table.methods] + [r["val_soft"] for r in table.rows])
    assert greedy["held_out"] < greedy["val"] - 0.02  # fitted on one half, its picks do not carry to the other
    assert not table.final["name"].startswith("greedy")
    assert table.final["test"] > greedy["test"]


def test_held_out_top_k_ranks_on_one_half_and_votes_on_the_other():
    members = fake_members(members=5, rows=40)
    halves = validation_halves(40)
    held_out = held_out_top_k(members, [1, 5], "soft", halves)
    task, val, labels = members.task, members.val_probs, members.val_labels
    decided = np.empty(val.shape[1:], np.float32)
    for part in (0, 1):
        ranked_on, voted_on = halves == part, halves != part
        best = max(range(5), key=lambda m: (task.scores(val[m, ranked_on], labels[ranked_on])["accuracy"], -m))
        decided[voted_on] = val[best, voted_on]
    assert held_out["soft"][0] == pytest.approx(task.scores(decided, labels)["accuracy"])
    assert held_out["soft"][1] == pytest.approx(task.scores(soft_vote(val), labels)["accuracy"])  # all: as ranked
    assert "hard" not in held_out


def test_validation_halves_split_the_rows_evenly():
    halves = validation_halves(101)
    assert set(halves.tolist()) == {0, 1} and abs(int(halves.sum()) - 50) <= 1
    np.testing.assert_array_equal(halves, validation_halves(101))  # seeded: the same halves each time


def test_fitted_weights_favour_the_informative_member():
    labels = np.array([0, 1, 1, 0])
    perfect = two_class([[0.99, 0.01, 0.01, 0.99]])
    coin = two_class([[0.5, 0.5, 0.5, 0.5]])
    weights = fit_weights(np.concatenate([coin, perfect]), labels)
    assert weights.sum() == pytest.approx(1) and weights[1] > 0.95


def test_fitted_weights_reach_the_best_validation_likelihood():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 200)
    probs = rng.dirichlet(np.ones(3), size=(2, 200)).astype(np.float32)
    probs[0, np.arange(200), labels] += 0.3
    probs[1, np.arange(100), labels[:100]] += 0.6  # the second member knows the first half well
    probs /= probs.sum(axis=2, keepdims=True)

    def likelihood(w):
        return np.log(w * probs[0, np.arange(200), labels] + (1 - w) * probs[1, np.arange(200), labels]).mean()

    grid = np.linspace(0, 1, 1001)
    best = grid[np.argmax([likelihood(w) for w in grid])]
    weights = fit_weights(probs, labels, iterations=2000, tol=1e-12)
    assert 0.05 < best < 0.95  # an interior optimum, so the check is not trivial
    assert weights[0] == pytest.approx(best, abs=0.01)


def test_multilabel_weights_use_both_outcomes_per_label():
    labels = np.array([[1, 0], [0, 1]])
    good = np.array([[[0.9, 0.1], [0.1, 0.9]]], dtype=np.float32)
    inverted = 1 - good
    assert fit_weights(np.concatenate([inverted, good]), labels)[1] > 0.95


def test_member_agreement_hand_checked():
    labels = np.array([0, 1, 1, 0])
    probs = two_class([
        [0.9, 0.1, 0.1, 0.9],  # decides 0 1 1 0: never wrong
        [0.9, 0.9, 0.1, 0.9],  # 0 0 1 0: wrong on row 1
        [0.1, 0.9, 0.1, 0.1],  # 1 0 1 1: wrong on rows 0, 1, 3
    ])
    agreement = member_agreement(probs, labels)
    np.testing.assert_allclose(agreement["disagreement"], [[0, 0.25, 0.75], [0.25, 0, 0.5], [0.75, 0.5, 0]])
    errors = np.array([[0, 1, 0, 0], [1, 1, 0, 1]])
    assert agreement["error_correlation"][1, 2] == pytest.approx(np.corrcoef(errors)[0, 1])
    assert np.isnan(agreement["error_correlation"][0, 1])  # a member that is never wrong has no correlation


def fake_members(members=6, rows=120, classes=3, seed=0, multilabel=False):
    rng = np.random.default_rng(seed)
    def split():
        if multilabel:
            labels = (rng.random((rows, classes)) < 0.4).astype(np.uint8)
            probs = np.clip(labels * rng.uniform(0.1, 0.5, (members, 1, 1)) + rng.random((members, rows, classes)) * 0.6, 0, 1)
            return probs.astype(np.float32), labels
        labels = rng.integers(0, classes, rows)
        logits = rng.normal(size=(members, rows, classes))
        logits[:, np.arange(rows), labels] += np.linspace(1.5, 0.3, members)[:, None]
        return (np.exp(logits) / np.exp(logits).sum(axis=2, keepdims=True)).astype(np.float32), labels
    (val, y_val), (test, y_test) = split(), split()
    ids = [f"run{i}" for i in range(members)]
    return Members(ids, ids, val, test, y_val, y_test, [str(c) for c in range(classes)], [None] * members, "sweep")


@pytest.mark.parametrize("multilabel", [False, True])
def test_curve_makes_the_same_decisions_as_the_voting_functions(multilabel):
    members = fake_members(multilabel=multilabel)
    curve = score_curve(members)
    task = members.task
    measure = task.primary_measure
    for index, k in enumerate(curve["k"]):
        top = members.test_probs[:k]
        assert curve["test_soft"][index] == pytest.approx(task.scores(soft_vote(top), members.test_labels)[measure])
        assert curve["test_hard"][index] == pytest.approx(
            task.scores(hard_vote(top, multilabel), members.test_labels)[measure])


@pytest.mark.parametrize("multilabel", [False, True])
def test_table_rows_methods_and_final_choice_on_validation(multilabel):
    members = fake_members(multilabel=multilabel)
    table = build_table(members, ["1", "50%", "100%"], greedy_rounds=8)
    assert [row["k"] for row in table.rows] == [1, 3, 6]
    assert table.rows[0]["soft"] == table.best_single
    assert [m["method"].split()[0] for m in table.methods] == ["greedy", "bagged", "weighted"]
    # Chosen on validation, never on test: by held-out scores on the validation halves.
    candidates = [r[f"held_out_{v}"] for r in table.rows for v in ("soft", "hard")] + [m["held_out"] for m in table.methods]
    assert table.final["held_out"] == max(candidates)
    assert table.final["weights"].sum() == pytest.approx(1)
    assert (table.final["thresholds"] is not None) == multilabel
    text = table.format()
    assert "top 50%" in text and "greedy (8 rounds)" in text and "bagged (10 bags)" in text and "best single" in text
    assert "final (best held-out validation)" in text
    assert {"mean_pairwise_disagreement", "mean_error_correlation"} <= set(table.agreement)


def test_table_lists_the_final_members_models_and_disagreement():
    members = fake_members()
    members.families = ["cnn", "cnn", "timm/resnet10t", "mlp", "cnn", "mlp"]
    table = build_table(members, ["1", "100%"], greedy_rounds=8)
    used = np.flatnonzero(table.final["weights"])
    assert len(used) > 1  # an ensemble, so disagreement within it means something
    weights = [m["weight"] for m in table.final_members]
    assert len(weights) == len(used) and weights == sorted(weights, reverse=True)
    pairs = table.matrices["disagreement"][np.ix_(used, used)]
    first = table.final_members[0]
    row = list(used).index(members.names.index(first["name"]))
    assert first["disagreement"] == pytest.approx(pairs[row].sum() / (len(used) - 1))
    assert table.agreement["final_mean_pairwise_disagreement"] == pytest.approx(
        pairs[~np.eye(len(used), dtype=bool)].mean())
    for member in table.final_members:
        assert member["family"] == members.families[members.names.index(member["name"])]
    text = table.format()
    assert f"final members ({len(used)}; models: " in text and "disagrees" in text


def test_greedy_ensemble_carries_thresholds_tuned_on_validation():
    members = fake_members(members=1, multilabel=True)
    members.val_probs *= 0.6  # an under-confident member: its best threshold is below 0.5
    members.test_probs *= 0.6
    table = build_table(members, ["100%"], greedy_rounds=1, thresholds="global")
    # One member: every candidate is that member, and only greedy and weighted tune their thresholds, so
    # greedy (first on a tie) is the best on validation.
    expected = metrics.tune_thresholds(members.val_probs[0], members.val_labels, "global")
    assert expected[0] != 0.5  # else this test could not tell tuned from fixed thresholds
    assert table.final["name"].startswith("greedy")
    np.testing.assert_array_equal(table.final["thresholds"], expected)
    never = metrics.never_predicted(members.test_probs[0], members.classes, expected)
    assert table.final["never_predicted"] == never
    assert ("never predicted on test rows by the final ensemble" in table.format()) == bool(never)
