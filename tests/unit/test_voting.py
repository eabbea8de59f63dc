import numpy as np
import pytest

from visionsweep.ensemble import hard_vote, parse_top_k, soft_vote
from visionsweep.ensemble._job import members_for

# 3 members x 2 rows x 3 classes
PROBS = np.array(
    [
        [[0.6, 0.3, 0.1], [0.1, 0.5, 0.4]],
        [[0.2, 0.7, 0.1], [0.1, 0.3, 0.6]],
        [[0.5, 0.4, 0.1], [0.0, 0.3, 0.7]],
    ]
)


def test_soft_vote_is_the_mean_probability():
    np.testing.assert_allclose(soft_vote(PROBS), [[1.3 / 3, 1.4 / 3, 0.1], [0.2 / 3, 1.1 / 3, 1.7 / 3]])
    # Soft voting picks class 1 on row 0 (higher mean), hard voting picks class 0 (two votes of three).
    assert soft_vote(PROBS).argmax(axis=1).tolist() == [1, 2]
    assert hard_vote(PROBS).argmax(axis=1).tolist() == [0, 2]


def test_hard_vote_tie_goes_to_the_higher_mean_probability():
    two = np.array([[[0.9, 0.1]], [[0.4, 0.6]]])  # one vote each; class 0 has mean 0.65
    assert hard_vote(two).argmax(axis=1).tolist() == [0]
    two_other_way = np.array([[[0.55, 0.45]], [[0.2, 0.8]]])  # one vote each; class 1 has mean 0.625
    assert hard_vote(two_other_way).argmax(axis=1).tolist() == [1]


def test_hard_vote_count_beats_probability():
    # Two weak votes for class 0 beat one confident vote for class 1.
    probs = np.array([[[0.51, 0.49]], [[0.51, 0.49]], [[0.0, 1.0]]])
    assert soft_vote(probs).argmax(axis=1).tolist() == [1]
    assert hard_vote(probs).argmax(axis=1).tolist() == [0]


def test_hard_vote_multilabel_majority_per_label_and_tie_by_mean():
    probs = np.array([[[0.9, 0.6, 0.2]], [[0.8, 0.1, 0.3]], [[0.1, 0.4, 0.9]], [[0.2, 0.45, 0.7]]])
    # label 0: 2 yes of 4 (tie), mean 0.5 -> yes; label 1: 1 yes -> no; label 2: 2 yes (tie), mean 0.525 -> yes
    assert hard_vote(probs, multilabel=True).tolist() == [[1.0, 0.0, 1.0]]


def test_top_k_counts_and_percentages():
    assert parse_top_k("5") == (5, False) and parse_top_k("10%") == (10, True)
    assert members_for((10, True), 380) == 38 and members_for((10, True), 5) == 1
    assert members_for((50, False), 16) == 16
    for bad in ("0", "-3", "150%", "ten"):
        with pytest.raises(ValueError, match="--top-k"):
            parse_top_k(bad)
