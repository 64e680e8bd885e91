"""The passkey scorer and depth buckets, shared by training (the held-out gate) and evaluation; a module of their own
so that an edit of the other metrics (F1, ROUGE) never reruns training (gistpoc.codehash tracks imports per module)."""

from __future__ import annotations

import re

DEPTH_BINS = [(0.0, 0.33, "early"), (0.33, 0.66, "middle"), (0.66, 1.01, "late")]


def passkey_correct(prediction: str, passkey: str) -> float:
    """Exact recovery: the first number in the answer is the passkey, digit for digit."""
    m = re.search(r"\d+", prediction or "")
    return float(bool(m) and m.group(0) == passkey)
