"""Classification losses that tolerate label noise, as torch modules on logits.

Three losses, all taking raw logits of shape (B, C) and integer targets of shape
(B,) with values in ``0..C-1``, all returning the mean over the batch:

- :class:`CrossEntropy`: ``-log p_y``, the non-robust baseline.
- :class:`GeneralizedCrossEntropy`: ``L_q = (1 - p_y^q) / q`` (Zhang and Sabuncu
  2018); tends to CE as ``q -> 0`` and equals ``1 - p_y`` (MAE up to a factor 2)
  at ``q = 1``. The paper uses ``q = 0.7`` (OrganCMNIST ``0.5``).
- :class:`SymmetricCrossEntropy`: ``alpha * CE + beta * RCE`` (Wang et al. 2019),
  where the reverse cross-entropy ``RCE = -sum_k p_k log y_k`` clamps ``log 0`` of
  the one-hot label to ``log(clamp)``, which gives ``RCE = -log(clamp) (1 - p_y)``.

``p = softmax(logits)`` throughout; every loss is computed from ``log_softmax`` so
that confident wrong predictions (logits like ``[50, -50]`` with the wrong label)
give finite values and finite gradients.

:func:`make_loss` builds a loss from its name ("ce", "gce", "sce") and parameters,
which is how pipelines and :func:`lqknn.classification.train_classifier` refer to
them.

References: METHOD.md section 7; Zhang, Z. and Sabuncu, M. R. (2018), Generalized
cross entropy loss for training deep neural networks with noisy labels, NeurIPS;
Wang, Y. et al. (2019), Symmetric cross entropy for robust learning with noisy
labels, ICCV.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lqknn._validation import check_float

__all__ = [
    "LOSS_NAMES",
    "CrossEntropy",
    "GeneralizedCrossEntropy",
    "SymmetricCrossEntropy",
    "make_loss",
]


def _target_log_prob(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Return ``log p_y`` of shape (B,) from logits (B, C) and targets (B,)."""
    log_p = F.log_softmax(logits, dim=1)
    return log_p.gather(1, target.long().unsqueeze(1)).squeeze(1)


class CrossEntropy(nn.Module):
    """Cross-entropy ``-log p_y`` on logits, averaged over the batch.

    Time O(B C), memory O(B C) for a batch of B samples and C classes.
    """

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, target.long())


class GeneralizedCrossEntropy(nn.Module):
    """Generalised cross-entropy ``L_q = (1 - p_y^q) / q`` on logits, batch mean.

    Parameters
    ----------
    q : float, default 0.7
        Trade-off in ``(0, 1]``: small ``q`` behaves like cross-entropy (fast to
        converge, not noise tolerant), ``q = 1`` gives ``1 - p_y`` (mean absolute
        error up to a factor 2: noise tolerant, slow).

    Notes
    -----
    ``p_y^q`` is computed as ``exp(q log_softmax(logits)_y)`` and the loss as
    ``-expm1(q log p_y) / q``, which stays accurate for tiny ``q`` (where it
    approaches ``-log p_y``) and finite for ``p_y`` that underflows. Time
    O(B C), memory O(B C).

    References
    ----------
    Zhang and Sabuncu (2018), NeurIPS, eq. (3) of the paper; METHOD.md section 7.
    """

    def __init__(self, q: float = 0.7) -> None:
        super().__init__()
        self.q = check_float(q, "q", low=0.0, high=1.0, low_inclusive=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_py = _target_log_prob(logits, target)
        return (-torch.expm1(self.q * log_py) / self.q).mean()

    def extra_repr(self) -> str:
        return f"q={self.q}"


class SymmetricCrossEntropy(nn.Module):
    """Symmetric cross-entropy ``alpha * CE + beta * RCE`` on logits, batch mean.

    Parameters
    ----------
    alpha : float, default 0.1
        Weight (>= 0) of the cross-entropy term.
    beta : float, default 1.0
        Weight (>= 0) of the reverse cross-entropy term.
    clamp : float, default 1e-4
        Value in ``(0, 1)`` that replaces the zeros of the one-hot label inside
        the logarithm of the reverse cross-entropy.

    Notes
    -----
    ``RCE = -sum_k p_k log(max(y_k, clamp)) = -log(clamp) * sum_{k != y} p_k
    = -log(clamp) (1 - p_y)``; the sum over the non-target probabilities is used
    so that it stays accurate when ``p_y`` is close to 1. Unlike the authors'
    code, ``p`` itself is not clamped to ``[1e-7, 1]`` (this only changes values
    below ``C * 1e-7``). Time O(B C), memory O(B C).

    References
    ----------
    Wang, Y., Ma, X., Chen, Z., Luo, Y., Yi, J. and Bailey, J. (2019), Symmetric
    cross entropy for robust learning with noisy labels, ICCV, eq. (5)-(7).
    """

    def __init__(self, alpha: float = 0.1, beta: float = 1.0, clamp: float = 1e-4):
        super().__init__()
        self.alpha = check_float(alpha, "alpha", low=0.0)
        self.beta = check_float(beta, "beta", low=0.0)
        self.clamp = check_float(
            clamp, "clamp", low=0.0, high=1.0, low_inclusive=False, high_inclusive=False
        )
        if self.alpha == 0.0 and self.beta == 0.0:
            raise ValueError("alpha and beta must not both be 0 (the loss would be 0).")

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = target.long()
        log_p = F.log_softmax(logits, dim=1)
        ce = -log_p.gather(1, target.unsqueeze(1)).squeeze(1)
        not_target = torch.ones_like(log_p, dtype=torch.bool)
        not_target.scatter_(1, target.unsqueeze(1), False)
        one_minus_py = (log_p.exp() * not_target).sum(dim=1)
        rce = -math.log(self.clamp) * one_minus_py
        return (self.alpha * ce + self.beta * rce).mean()

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}, clamp={self.clamp}"


_LOSSES: dict[str, type[nn.Module]] = {
    "ce": CrossEntropy,
    "gce": GeneralizedCrossEntropy,
    "sce": SymmetricCrossEntropy,
}
_PARAMS: dict[str, tuple[str, ...]] = {
    "ce": (),
    "gce": ("q",),
    "sce": ("alpha", "beta", "clamp"),
}

#: Valid names for :func:`make_loss`.
LOSS_NAMES: tuple[str, ...] = tuple(_LOSSES)


def make_loss(name: str, **params) -> nn.Module:
    """Build a loss module from its name and parameters.

    Parameters
    ----------
    name : {"ce", "gce", "sce"}
        Loss name, case-insensitive: cross-entropy, generalised cross-entropy
        (parameter ``q``), symmetric cross-entropy (``alpha``, ``beta``, ``clamp``).
    **params
        Parameters of that loss; unknown parameters are an error.

    Returns
    -------
    torch.nn.Module
        Callable as ``loss(logits (B, C), target (B,)) -> scalar tensor``.

    Examples
    --------
    >>> loss = make_loss("gce", q=0.7)
    """
    if not isinstance(name, str) or name.lower() not in _LOSSES:
        raise ValueError(f"loss must be one of {sorted(_LOSSES)}, got {name!r}.")
    key = name.lower()
    unknown = sorted(set(params) - set(_PARAMS[key]))
    if unknown:
        allowed = list(_PARAMS[key]) or "none"
        raise ValueError(
            f"loss {key!r} got unknown parameter(s) {unknown}; allowed: {allowed}."
        )
    return _LOSSES[key](**params)
