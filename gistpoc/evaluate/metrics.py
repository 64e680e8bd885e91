"""Answer-quality metrics: SQuAD-style EM/F1, passkey exact match, ROUGE-L, bootstrap CIs."""

from __future__ import annotations

import math
import random
import re
import string
from collections import Counter, defaultdict

from gistpoc.evaluate.passkey import passkey_correct  # noqa: F401  (re-exported: one scorer for every metric user)

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower case, drop punctuation and articles, collapse whitespace."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, reference: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(reference))


def token_f1(prediction: str, reference: str) -> float:
    pred, ref = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    common = Counter(pred) & Counter(ref)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F1 over normalised tokens (longest common subsequence)."""
    a, b = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not a or not b:
        return 0.0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    lcs = prev[-1]
    if lcs == 0:
        return 0.0
    p, r = lcs / len(a), lcs / len(b)
    return 2 * p * r / (p + r)


def bootstrap_ci(values: list[float], groups: list[str], n_samples: int = 1000, seed: int = 0, alpha: float = 0.05) -> tuple[float, float]:
    """Percentile CI of the mean, resampling whole groups (documents) with replacement."""
    clean = [(v, g) for v, g in zip(values, groups) if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not clean:
        return (float("nan"), float("nan"))
    by_group: dict[str, list[float]] = defaultdict(list)
    for v, g in clean:
        by_group[g].append(v)
    keys = sorted(by_group)
    rng = random.Random(seed)
    means = []
    for _ in range(n_samples):
        picked = [v for _ in keys for v in by_group[keys[rng.randrange(len(keys))]]]
        means.append(sum(picked) / len(picked))
    means.sort()
    lo = means[int(alpha / 2 * (n_samples - 1))]
    hi = means[int((1 - alpha / 2) * (n_samples - 1))]
    return (lo, hi)


def paired_difference(a: dict, b: dict, groups: dict, n_samples: int = 2000, seed: int = 0) -> tuple[float, float, float, int]:
    """Mean of ``a[k] - b[k]`` over the items both score (two methods on the same questions), its percentile CI
    resampling whole documents (``groups[k]``), and the number of items: the gain of one method over another with the
    pairing kept, which two separate CIs hide."""
    keys = sorted(k for k in a.keys() & b.keys() if a[k] is not None and b[k] is not None)
    diffs = [float(a[k]) - float(b[k]) for k in keys]
    if not diffs:
        return (float("nan"), float("nan"), float("nan"), 0)
    lo, hi = bootstrap_ci(diffs, [groups[k] for k in keys], n_samples, seed)
    return (sum(diffs) / len(diffs), lo, hi, len(diffs))


def quantile(values: list[float], q: float) -> float:
    vals = sorted(v for v in values if v is not None and not math.isnan(v))
    if not vals:
        return float("nan")
    pos = (len(vals) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return vals[lo] + (vals[hi] - vals[lo]) * (pos - lo)
