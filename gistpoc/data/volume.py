"""Stage 1's text at volume: extracted pages that only ever feed stage 1's windows (passkey, continuation,
reconstruction), never documents with questions, and share no passage with a validation or test document.

A page is dropped when it shares any ``n``-word sequence (13, the contamination test of GPT-3's paper) with a
validation or test document; the drops are counted by package in the stats."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from typing import Iterator

_WORD = re.compile(r"\w+")


def _runs(text: str, n: int) -> Iterator[int]:
    """Hashes of every run of ``n`` consecutive words (lower-cased), in order."""
    words = _WORD.findall(text.lower())
    return (hash(tuple(words[i : i + n])) for i in range(len(words) - n + 1))


def shingles(text: str, n: int) -> set[int]:
    return set(_runs(text, n))


def train_only(pages: list[dict], documents: list[dict], n: int = 13) -> tuple[list[dict], list[dict]]:
    """(kept, dropped) pages: a page sharing an ``n``-word run with a document outside the training split is dropped
    (``dropped`` rows say with which document)."""
    held = {}
    for d in documents:
        if d["split"] != "train":
            for h in shingles(d["text"], n):
                held.setdefault(h, d["doc_id"])
    kept, dropped = [], []
    for p in pages:
        hit = next((held[h] for h in _runs(p["text"], n) if h in held), None)
        if hit is None:
            kept.append(p)
        else:
            dropped.append({"doc_id": p["doc_id"], "collection": p["collection"], "shares_with": hit})
    return kept, dropped


def volume_stats(kept: list[dict], dropped: list[dict], tokens: list[int], n: int) -> dict:
    """Pages, characters and model tokens per package (collection), the drops, and the totals."""
    by: dict[str, Counter] = defaultdict(Counter)
    licenses: dict[str, str] = {}
    for p, t in zip(kept, tokens):
        licenses.setdefault(p["collection"], p["license"])
        c = by[p["collection"]]
        c["pages"] += 1
        c["chars"] += len(p["text"])
        c["tokens"] += t
    for d in dropped:
        by[d["collection"]]["dropped_overlap"] += 1
    packages = {k: {"pages": v["pages"], "chars": v["chars"], "tokens": v["tokens"], "dropped_overlap": v["dropped_overlap"],
                    "license": licenses.get(k, "")} for k, v in sorted(by.items())}
    return {"split": "train (stage 1 windows only)", "overlap_ngram_words": n, "pages": len(kept), "tokens": sum(tokens),
            "chars": sum(len(p["text"]) for p in kept), "dropped_overlap": len(dropped), "dropped": dropped[:200], "packages": packages}
