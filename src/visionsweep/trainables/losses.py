"""Losses for imbalanced labels, beside cross-entropy, BCE and MSE: focal loss (Lin et al., 2017) and the
asymmetric loss for multi-label classification (ASL, Ridnik et al., 2021); `train.loss: focal | asymmetric`
(recipe.py's `Loss`) picks them.

With rare labels most (image, label) pairs are easy negatives: summed, their BCE gradient drowns the few
positives, and a rare label's probabilities sink far below 0.5. Both losses shrink easy examples' terms:

    focal:      -[ t (1 - p)^gamma log p  +  (1 - t) p^gamma log(1 - p) ]                 (per label, sigmoid)
                -sum_c t_c (1 - p_c)^gamma log p_c                                           (multi-class, softmax)
    asymmetric: -[ t (1 - p)^gamma_pos log p  +  (1 - t) p_m^gamma_neg log(1 - p_m) ],  p_m = max(p - clip, 0)

t is the target in 0..1 (multi-hot, one-hot, smoothed or mixed); per-label weights (`balanced` class weights)
scale the positive term, as BCE's pos_weight does. Both are means over their elements (images x labels,
or images for softmax focal), the scale of BCE's and cross-entropy's, so a learning rate carries over. ASL's
clip discards negatives the model already scores below `clip`, and gamma_neg > gamma_pos focuses on the
hard negatives while keeping every positive's gradient.
"""

import torch
from torch.nn import functional as F

TINY = 1e-8  # smallest base a focusing power sees: keeps its gradient finite where the base is 0


def focal(logits: torch.Tensor, target: torch.Tensor, multilabel: bool, gamma: float = 2.0,
          weights: torch.Tensor | None = None) -> torch.Tensor:
    """Focal loss; gamma 0 is BCE (multi-label) or cross-entropy (multi-class) itself."""
    if multilabel:
        return asymmetric(logits, target, gamma_pos=gamma, gamma_neg=gamma, clip=0.0, weights=weights)
    log_p = F.log_softmax(logits.float(), dim=1)
    terms = target * _focusing(1 - log_p.exp(), gamma) * log_p
    if weights is not None:
        terms = terms * weights
    return -terms.sum(dim=1).mean()


def asymmetric(logits: torch.Tensor, target: torch.Tensor, gamma_pos: float = 0.0, gamma_neg: float = 4.0,
               clip: float = 0.05, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Asymmetric loss per label (sigmoid); with gamma_pos = gamma_neg = gamma and clip 0 it is sigmoid focal loss."""
    logits = logits.float()
    p = torch.sigmoid(logits)
    positive = _focusing(1 - p, gamma_pos) * F.logsigmoid(logits)
    if clip > 0:
        shifted = (p - clip).clamp(min=0)  # p_m: negatives scored below clip add nothing
        negative = _focusing(shifted, gamma_neg) * torch.log((1 - shifted).clamp(min=TINY))
    else:
        negative = _focusing(p, gamma_neg) * F.logsigmoid(-logits)
    if weights is not None:
        positive = positive * weights
    return -(target * positive + (1 - target) * negative).mean()


def _focusing(base: torch.Tensor, gamma: float) -> torch.Tensor:
    return base.clamp(min=TINY) ** gamma if gamma else torch.ones_like(base)
