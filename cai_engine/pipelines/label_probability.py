"""Probability of one of two labels from a reply's top logprobs: the judge's A/B and the eval's yes/no.

At one token position the probability mass of every top alternative (and the sampled token) that
reads as the first label is summed, likewise the second, and ``P(first) = m1 / (m1 + m2)``. A
label absent from the top-k gets the smallest listed probability (an upper bound on its true mass,
and never more than the mass left over), so a soft label is never more extreme than the evidence.

Which position: the first of the first ``scan`` generated tokens whose sampled token is a label,
or failing that the first position where a label is among the top alternatives (a small model
wandering off still shows how it leant).
"""

from __future__ import annotations

import math
from typing import Callable

from cai_engine.models.base import TokenLogprob

#: ``token -> label or None``, e.g. ``" (A" -> "A"``, ``"Yes." -> "yes"``.
Reader = Callable[[str], "str | None"]


def label_probability(position: TokenLogprob, read: Reader, first: str, second: str) -> float | None:
    """``P(first) / (P(first) + P(second))`` at one position, or None when neither label is there."""
    alternatives = dict(position.top)
    alternatives.setdefault(position.token, position.logprob)
    mass = {first: 0.0, second: 0.0}
    for token, logprob in alternatives.items():
        label = read(token)
        if label in mass and math.isfinite(logprob):
            mass[label] += math.exp(logprob)
    if mass[first] == 0.0 and mass[second] == 0.0:
        return None
    listed = [math.exp(lp) for lp in alternatives.values() if math.isfinite(lp)]
    floor = min(min(listed), max(0.0, 1.0 - sum(listed))) if listed else 0.0
    for label in mass:
        if mass[label] == 0.0:
            mass[label] = floor
    return mass[first] / (mass[first] + mass[second])


def soft_label(logprobs: list[TokenLogprob] | None, read: Reader, first: str, second: str, *, scan: int) -> float | None:
    """``P(first)`` at the first label position among the first ``scan`` tokens, or None."""
    if not logprobs:
        return None
    window = logprobs[:scan]
    labels = (first, second)
    for position in window:
        if read(position.token) in labels:
            return label_probability(position, read, first, second)
    for position in window:
        if any(read(token) in labels for token in position.top):
            return label_probability(position, read, first, second)
    return None
