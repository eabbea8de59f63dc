"""Multi-label scores and decision thresholds tuned on validation rows only."""

import numpy as np

from visionsweep import metrics


def test_multilabel_scores_with_per_class_thresholds_and_names():
    labels = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    probs = np.array([[0.9, 0.2], [0.1, 0.35], [0.8, 0.4], [0.2, 0.1]])
    at_half = metrics.multilabel_scores(probs, labels, "val_")
    assert at_half["val_subset_accuracy"] == 0.5
    tuned = metrics.multilabel_scores(probs, labels, "val_", threshold=np.array([0.5, 0.3]), classes=["a b", "c/d?"])
    assert tuned["val_micro_f1"] == 1.0 and tuned["val_hamming_loss"] == 0.0
    assert tuned["val_recall_c/d_"] == 1.0 and tuned["val_precision_a b"] == 1.0


def test_thresholds_are_tuned_on_the_rows_given():
    rng = np.random.default_rng(0)
    labels = (rng.random((400, 3)) < 0.3).astype(np.uint8)
    labels[:, 2] = 0
    # class 0 separates at 0.2, class 1 at 0.7; class 2 never occurs in these rows
    probs = np.where(labels, [0.3, 0.8, 0.9], [0.1, 0.6, 0.1]).astype(np.float32)
    per_class = metrics.tune_thresholds(probs, labels, "per_class")
    assert 0.1 < per_class[0] <= 0.3 and 0.6 < per_class[1] <= 0.8 and per_class[2] == 0.5
    assert metrics.multilabel_scores(probs, labels, threshold=per_class)["micro_f1"] == 1.0
    glob = metrics.tune_thresholds(probs, labels, "global")
    assert len(set(glob.tolist())) == 1 and 0.6 < glob[0] <= 0.8
    np.testing.assert_allclose(metrics.tune_thresholds(probs, labels, "fixed", 0.4), 0.4)
    # other rows (the test rows) do not move the thresholds chosen here
    test_labels = 1 - labels
    assert np.array_equal(metrics.tune_thresholds(probs, labels, "per_class"), per_class)
    assert metrics.multilabel_scores(probs, test_labels, threshold=per_class)["micro_f1"] < 0.5


def test_ensemble_members_vote_with_their_own_thresholds():
    from visionsweep.ensemble.voting import centre_on_thresholds
    from visionsweep.ensemble.voting import hard_vote

    probs = np.array([[[0.3, 0.6]], [[0.3, 0.6]], [[0.1, 0.9]]], np.float32)  # 3 members, 1 row, 2 labels
    stored = [{"thresholds": np.array([0.2, 0.7])}, {"thresholds": np.array([0.2, 0.7])}, {}]
    centred = centre_on_thresholds(probs, stored)
    assert ((centred >= 0.5) == [[[True, False]], [[True, False]], [[False, True]]]).all()
    assert hard_vote(centred, multilabel=True).tolist() == [[1.0, 0.0]]


def test_a_rare_label_with_every_probability_below_five_percent_is_still_predicted():
    labels = np.zeros((200, 2), np.uint8)
    labels[::40, 0] = 1  # 5 positives of 200
    labels[::2, 1] = 1
    probs = np.where(labels, [0.03, 0.9], [0.004, 0.2]).astype(np.float32)
    probs[1, 0] = 0.02  # one negative scores close to the positives
    per_class = metrics.tune_thresholds(probs, labels, "per_class")
    assert 0.02 < per_class[0] < 0.03 and 0.2 < per_class[1] <= 0.9
    predicted = probs >= per_class
    assert np.array_equal(predicted, labels.astype(bool))


def test_tuned_threshold_reaches_the_best_f1_of_any_cut():
    rng = np.random.default_rng(1)
    for _ in range(20):
        positive = rng.random(300) < rng.uniform(0.01, 0.5)
        positive[0] = True
        scores = np.round(np.clip(rng.normal(0.1 + 0.2 * positive, 0.15), 0, 1), 2).astype(np.float32)  # ties
        cut = metrics.best_f1_cut(scores, positive)

        def f1(t):
            kept = scores >= t
            return 2 * (kept & positive).sum() / (kept.sum() + positive.sum())

        best = max(f1(t) for t in np.unique(scores))
        assert f1(np.float32(cut)) == best
        assert not np.isin(np.float32(cut), scores)  # halfway between two scores
    assert metrics.best_f1_cut(np.array([0.1, 0.2]), np.array([False, False]), 0.4) == 0.4


def test_micro_f1_thresholds_keep_micro_f1_and_every_label():
    """A rare label the model barely separates: its own best F1 (per_class) costs many false positives, which
    lowers micro-F1 below a single threshold's; micro_f1 thresholds beat both on micro-F1 and still give the
    rare label its surest rows."""
    rng = np.random.default_rng(3)
    rows = 2000
    labels = np.zeros((rows, 3), np.uint8)
    labels[:, 0] = rng.random(rows) < 0.5
    labels[:, 1] = rng.random(rows) < 0.3
    labels[:, 2] = rng.random(rows) < 0.02  # rare
    noise = rng.normal(0, [0.2, 0.25, 0.2], (rows, 3))
    probs = np.clip(np.where(labels, [0.75, 0.7, 0.2], [0.25, 0.3, 0.1]) + noise, 0, 1).astype(np.float32)

    def micro(cuts):
        return metrics.multilabel_scores(probs, labels, threshold=cuts)["micro_f1"]

    joint = metrics.tune_thresholds(probs, labels, "micro_f1")
    per_class = metrics.tune_thresholds(probs, labels, "per_class")
    single = metrics.tune_thresholds(probs, labels, "global")
    assert micro(joint) >= max(micro(single), micro(per_class)) and micro(per_class) < micro(single)
    assert (probs >= joint).any(axis=0).all()  # the rare label keeps its surest rows
    assert joint[2] <= probs[labels[:, 2] == 1, 2].max()  # ... and at least one of its positive rows
    # no single label's cut can be moved to a better micro-F1: a local optimum among the candidate cuts
    for c in range(3):
        for value in np.unique(probs[:, c])[::50]:
            moved = joint.copy()
            moved[c] = value
            assert micro(moved) <= micro(joint) + 1e-12
