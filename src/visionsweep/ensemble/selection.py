"""Choosing and weighting members on the validation rows only. Pure numpy.

Probabilities are shaped (members, rows, classes); labels are class indices (rows,) for multi-class
or a multi-hot (rows, classes) for multi-label.
"""

import numpy as np

from visionsweep.task import is_multilabel

CANDIDATE_ROWS = 2048  # contested rows scored at once in a greedy round: bounds the (members, rows, classes) buffer
MEMBER_CHUNK = 32  # members whose per-row margins are computed at once: bounds the copy it needs
BAGS = 10  # bagged selection: bootstrap samples of the validation rows
BAG_ROUNDS = 20  # greedy rounds within each bag
# EM updates of fitted weights: accelerated, 50 reach a higher likelihood than 200 plain ones (380 members)
WEIGHT_UPDATES = 50


def greedy_selection(val_probs: np.ndarray, val_labels: np.ndarray, rounds: int = 50) -> np.ndarray:
    """Forward selection with replacement (Caruana et al., 2004): how often each member is picked.

    Each round adds the member whose addition gives the mean of the picks the best validation score
    (accuracy, or micro-F1 at 0.5 for multi-label); ties go to the earlier member, so rank the members
    best first. After `rounds` rounds, the picks up to the best-scoring round are kept.
    """
    return Selector(val_probs, val_labels).greedy(rounds)


def bagged_selection(
    val_probs: np.ndarray, val_labels: np.ndarray, bags: int = BAGS, rounds: int = BAG_ROUNDS, seed: int = 0,
) -> np.ndarray:
    """Bagged ensemble selection (Caruana et al., 2006): greedy selection on `bags` bootstrap samples of the
    validation rows, each bag's picks normalised to weights, the weights averaged over the bags (members,).

    Greedy on all rows fits the validation rows' noise: a member that happens to fix a few rows is picked.
    A member has to help on most bootstrap samples to keep a large averaged weight.
    """
    return Selector(val_probs, val_labels).bagged(bags, rounds, seed)


class Selector:
    """Greedy and bagged selection over one set of validation predictions. Each run may weigh the rows
    (`row_weights`: a bootstrap sample's counts, or 0/1 for a part of the rows); what every run needs of
    the members is computed once, here.

    Exact speed-up: a row whose truth leads the running sum by more than any member could take away stays
    right whichever member is added, one whose truth trails by more than any member could give stays wrong;
    only the rows in between (few, once the ensemble has a few members) are scored per candidate.
    """

    def __init__(self, val_probs: np.ndarray, val_labels: np.ndarray):
        self.probs, self.labels = val_probs, val_labels
        self.multilabel = is_multilabel(val_labels)
        members, rows = val_probs.shape[:2]
        if self.multilabel:
            # per cell: the most any member adds
            self.most_added = val_probs.max(axis=0).reshape(-1)
            self.flat_probs = val_probs.reshape(members, -1)
            self.truth = val_labels.reshape(-1).astype(bool)
            self.truth_probs = truth_probabilities(val_probs, val_labels)
            return
        index = np.arange(rows)
        self.alone_right = np.empty((members, rows), dtype=bool)  # each member's own argmax is the truth
        self.own_margin = np.empty((members, rows), dtype=np.float32)  # its truth's probability minus its best rival's
        for start in range(0, members, MEMBER_CHUNK):
            part = val_probs[start : start + MEMBER_CHUNK]
            self.alone_right[start : start + MEMBER_CHUNK] = part.argmax(axis=2) == val_labels
            rival = part.copy()
            rival[:, index, val_labels] = -np.inf
            self.own_margin[start : start + MEMBER_CHUNK] = part[:, index, val_labels] - rival.max(axis=2)
        self.true_probs = np.ascontiguousarray(val_probs[:, index, val_labels])  # (members, rows)
        self.truth_probs = self.true_probs[:, :, None]
        self.least_margin = self.own_margin.min(axis=0)  # (rows,): the most any member can cut the truth's lead
        self.most_true = self.true_probs.max(axis=0)  # (rows,): the most any member adds to the truth

    def greedy(self, rounds: int = 50, row_weights: np.ndarray | None = None) -> np.ndarray:
        """How often each member is picked (greedy_selection), scoring rows by `row_weights` (default all 1)."""
        members, rows = self.probs.shape[:2]
        weights = np.ones(rows, dtype=np.int64) if row_weights is None else np.asarray(row_weights)
        total = np.zeros(self.probs.shape[1:], dtype=np.float32)
        picks, history = [], []
        for count in range(1, rounds + 1):
            if self.multilabel:
                scores = self._micro_f1_after_adding(total, count, weights)
            elif count == 1:
                scores = (self.alone_right @ weights) / weights.sum()
            else:
                scores = self._accuracy_after_adding(total, weights)
            best = int(np.argmax(scores))
            picks.append(best)
            history.append(scores[best])
            total += self.probs[best]
        keep = int(np.argmax(history)) + 1
        return np.bincount(picks[:keep], minlength=members)

    def bagged(self, bags: int = BAGS, rounds: int = BAG_ROUNDS, seed: int = 0,
               row_weights: np.ndarray | None = None) -> np.ndarray:
        """Weights (members,) summing to 1 (bagged_selection); the bags sample the rows `row_weights` keeps
        (those above 0; default all)."""
        rows = self.probs.shape[1]
        kept = np.arange(rows) if row_weights is None else np.flatnonzero(row_weights)
        rng = np.random.default_rng(seed)
        averaged = np.zeros(len(self.probs))
        for _ in range(bags):
            counts = np.bincount(rng.choice(kept, size=len(kept)), minlength=rows)
            picks = self.greedy(rounds, counts)
            averaged += picks / picks.sum()
        return averaged / bags

    def fitted_weights(self, row_weights: np.ndarray | None = None) -> np.ndarray:
        """fit_weights on the rows `row_weights` keeps (those above 0; default all)."""
        kept = slice(None) if row_weights is None else np.asarray(row_weights) > 0
        return fit_mixture(self.truth_probs[:, kept])

    def _accuracy_after_adding(self, total: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Weighted accuracy of argmax(total + probs[m]) for every member m, (members,).

        Adding member m moves the truth's lead over any rival by at least its own margin on the row and at most
        its probability of the truth: rows settled for every member are counted once, then (member, row) pairs
        settled for that member, and only the remaining pairs are summed and compared class by class.
        """
        labels = self.labels
        rows = np.arange(len(labels))
        rival = total.copy()
        rival[rows, labels] = -np.inf
        margin = total[rows, labels] - rival.max(axis=1)
        slack = 1e-3  # float32 sums of up to a few hundred members: a settled row is settled by more than their rounding
        right = margin + self.least_margin > slack
        contested = np.flatnonzero(~right & (margin + self.most_true >= -slack) & (weights > 0))
        correct = np.full(len(self.probs), weights[right].sum(), dtype=np.float64)
        for start in range(0, len(contested), CANDIDATE_ROWS * 8):
            part = contested[start : start + CANDIDATE_ROWS * 8]
            lead = margin[part]
            surely = lead + self.own_margin[:, part] > slack  # (members, rows)
            unsure = ~surely & (lead + self.true_probs[:, part] >= -slack)
            correct += surely @ weights[part]
            member, row = np.nonzero(unsure)
            row = part[row]
            sums = total[row] + self.probs[member, row]  # (pairs, classes)
            correct += np.bincount(member, weights=(sums.argmax(axis=1) == labels[row]) * weights[row],
                                   minlength=len(self.probs))
        return correct / weights.sum()

    def _micro_f1_after_adding(self, total: np.ndarray, count: int, weights: np.ndarray) -> np.ndarray:
        """Weighted micro-F1 of (total + probs[m]) / count >= 0.5 for every member m, (members,)."""
        cut = 0.5 * count
        cell_weights = np.repeat(weights, self.probs.shape[2])
        flat_total, truth = total.reshape(-1), self.truth
        surely_yes = flat_total >= cut
        contested = np.flatnonzero(~surely_yes & (flat_total + self.most_added >= cut) & (cell_weights > 0))
        true_pos = cell_weights[surely_yes & truth].sum()
        # settled cells only: a contested cell is a no unless the candidate makes it a yes
        settled_no = ~surely_yes
        settled_no[contested] = False
        wrong = cell_weights[surely_yes & ~truth].sum() + cell_weights[settled_no & truth].sum()
        for start in range(0, len(contested), CANDIDATE_ROWS):
            part = contested[start : start + CANDIDATE_ROWS]
            yes = flat_total[part] + self.flat_probs[:, part] >= cut
            true_pos = true_pos + (yes & truth[part]) @ cell_weights[part]
            wrong = wrong + (yes != truth[part]) @ cell_weights[part]
        f1 = np.where(true_pos + wrong > 0, 2 * true_pos / np.maximum(2 * true_pos + wrong, 1), 1.0)
        return np.broadcast_to(f1, (len(self.probs),))


def fit_weights(val_probs: np.ndarray, val_labels: np.ndarray, iterations: int = WEIGHT_UPDATES, tol: float = 1e-6) -> np.ndarray:
    """Soft-voting weights (members,), summing to 1, that maximise the validation likelihood.

    The mixture's likelihood of the truth only needs each member's probability of the true class
    (multi-class) or of the true 0/1 value per label (multi-label), and is concave in the weights,
    so the EM update for mixture weights climbs to the optimum. Plain EM crawls there (hundreds of
    updates over many members), so the updates are accelerated by SQUAREM (Varadhan and Roland, 2008):
    two EM updates give a direction, and a longer step along it is taken when it gains likelihood.
    `iterations` counts EM updates; it stops when the mean log-likelihood gains less than `tol` in a step.
    """
    return fit_mixture(truth_probabilities(val_probs, val_labels), iterations, tol)


def truth_probabilities(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each member's probability of the truth, (members, rows, 1) or, multi-label, of each label's 0/1 value
    (members, rows, classes)."""
    if not is_multilabel(labels):
        return probs[:, np.arange(len(labels)), labels][:, :, None]
    return np.where(labels.astype(bool)[None], probs, 1 - probs)


def fit_mixture(truth: np.ndarray, iterations: int = WEIGHT_UPDATES, tol: float = 1e-6) -> np.ndarray:
    """fit_weights on truth_probabilities (members, ...)."""
    members = len(truth)
    truth = np.ascontiguousarray(np.clip(truth.reshape(members, -1), 1e-7, 1.0), dtype=np.float32)  # 10x faster products

    def em(weights):
        updated = weights * (truth @ (1 / (weights @ truth))) / truth.shape[1]
        return updated / updated.sum()

    def likelihood(weights):
        return float(np.log(weights @ truth).mean())

    weights = np.full(members, 1 / members, dtype=np.float32)
    current = likelihood(weights)
    updates = 0
    while updates < iterations:
        once = em(weights)
        twice = em(once)
        updates += 2
        proposal, gained = twice, likelihood(twice)
        step, bend = once - weights, twice - 2 * once + weights
        curvature = float(bend @ bend)
        alpha = -np.sqrt(float(step @ step) / curvature) if curvature > 0 else -1.0
        if alpha < -1:  # a longer step than plain EM's; the weights must stay >= 0 and sum to 1
            extrapolated = np.clip(weights - 2 * alpha * step + alpha**2 * bend, 0, None)
            if extrapolated.sum() > 0:
                extrapolated = em((extrapolated / extrapolated.sum()).astype(np.float32))  # float64 would copy truth
                updates += 1
                if (value := likelihood(extrapolated)) > gained:
                    proposal, gained = extrapolated, value
        weights, previous, current = proposal, current, gained
        if current - previous < tol:
            break
    return weights.astype(np.float64)
