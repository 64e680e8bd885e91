"""Merge extracted sources into length-bounded documents with a deterministic split."""

from __future__ import annotations

import hashlib
import re
from collections import Counter, defaultdict

from gistpoc.utils import IssueLog, sha256_text

SPLITS = ("test", "val", "train")


def normalise_title(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", title.lower()).strip()


def content_hash(text: str) -> str:
    return sha256_text(re.sub(r"\s+", " ", text.lower()).strip())


def dedupe(docs: list[dict], issues: IssueLog) -> list[dict]:
    """Drop repeated documents by normalised title and by content hash (longest text wins)."""
    ordered = sorted(docs, key=lambda d: (-len(d["text"]), d["doc_id"]))
    seen_titles: dict[str, str] = {}
    seen_hashes: dict[str, str] = {}
    kept = []
    for doc in ordered:
        key_t, key_h = normalise_title(doc["title"]), content_hash(doc["text"])
        if key_t and key_t in seen_titles:
            issues.add(doc["collection"], doc["doc_id"], f"duplicate title: same as {seen_titles[key_t]}")
            continue
        if key_h in seen_hashes:
            issues.add(doc["collection"], doc["doc_id"], f"duplicate content: same as {seen_hashes[key_h]}")
            continue
        seen_titles[key_t] = doc["doc_id"]
        seen_hashes[key_h] = doc["doc_id"]
        kept.append(doc)
    return sorted(kept, key=lambda d: d["doc_id"])


def _cut_points(text: str, offsets: list[tuple[int, int]], min_tokens: int, max_tokens: int, start_tok: int) -> int | None:
    """Token index (exclusive) where a window starting at ``start_tok`` should end: the last paragraph or
    sentence boundary at or below ``max_tokens`` and at or above ``min_tokens``; None if no such window."""
    n = len(offsets)
    if n - start_tok < min_tokens:
        return None
    end = min(n, start_tok + max_tokens)
    if end == n:
        return n
    lo = start_tok + min_tokens
    window_text_end = offsets[end - 1][1]
    window_text_lo = offsets[lo - 1][1]
    segment = text[window_text_lo:window_text_end]
    for pattern in (r"\n\s*\n", r"[.!?]\s", r"\n"):
        matches = list(re.finditer(pattern, segment))
        if matches:
            char_cut = window_text_lo + matches[-1].start() + (1 if pattern == r"[.!?]\s" else 0)
            for t in range(end - 1, lo - 2, -1):
                if offsets[t][1] <= char_cut:
                    return t + 1
    return end


def window_document(doc: dict, tokenizer, min_tokens: int, max_tokens: int, windows_per_doc: int, issues: IssueLog) -> list[dict]:
    """Cut a document into up to ``windows_per_doc`` windows of [min_tokens, max_tokens] tokens."""
    enc = tokenizer(doc["text"], add_special_tokens=False, return_offsets_mapping=True)
    offsets = enc["offset_mapping"]
    n_tokens = len(offsets)
    if n_tokens < min_tokens:
        issues.add(doc["collection"], doc["doc_id"], f"below minimum length: {n_tokens} < {min_tokens} tokens")
        return []
    out, start = [], 0
    for w in range(windows_per_doc):
        end = _cut_points(doc["text"], offsets, min_tokens, max_tokens, start)
        if end is None:
            break
        c0 = offsets[start][0]
        c1 = offsets[end - 1][1]
        text = doc["text"][c0:c1].strip()
        if w > 0:
            text = f"# {doc['title']} (part {w + 1})\n\n{text}"
        win = dict(doc)
        win["doc_id"] = doc["doc_id"] if w == 0 else f"{doc['doc_id']}#w{w + 1}"
        win["base_doc_id"] = doc["doc_id"]
        win["text"] = text
        win["n_tokens"] = len(tokenizer(text, add_special_tokens=False)["input_ids"])
        win["orig_tokens"] = n_tokens
        win["truncated"] = end < n_tokens
        out.append(win)
        start = end
    return out


def _rank(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


# Share of base documents in each split's bucket. The bucket is a function of the base document id alone (no
# seed, no config): every config that reads the same dumps agrees on it, adding documents moves none, and a
# gist adapter pre-trained on one config's training documents never saw another config's val or test ones.
SPLIT_BUCKETS = (("test", 0.2), ("val", 0.2), ("train", 0.6))


def split_of(base_doc_id: str) -> str:
    """The split bucket of a base document (all its windows share it): test, val or train."""
    u = int(hashlib.sha256(f"gistpoc-split:{base_doc_id}".encode()).hexdigest()[:15], 16) / 16**15
    edge = 0.0
    for split, share in SPLIT_BUCKETS:
        edge += share
        if u < edge:
            return split
    return SPLIT_BUCKETS[-1][0]


def assign_splits(docs: list[dict], sizes: dict[str, int], seed: int, issues: IssueLog) -> list[dict]:
    """Each base document's split is its bucket (``split_of``); within a bucket, ``sizes[split]`` base documents
    are picked round-robin over sources in a seeded order.

    All windows of one base document land in the same split. Documents beyond the requested sizes are not
    used (counted in the statistics).
    """
    by_bucket: dict[str, dict[str, list[str]]] = {s: defaultdict(list) for s in SPLITS}
    base_of: dict[str, list[dict]] = defaultdict(list)
    for doc in docs:
        if doc["base_doc_id"] not in base_of:
            by_bucket[split_of(doc["base_doc_id"])][doc["source"]].append(doc["base_doc_id"])
        base_of[doc["base_doc_id"]].append(doc)
    out = []
    for split in SPLITS:
        queues = {src: sorted(ids, key=lambda b: _rank(seed, b)) for src, ids in sorted(by_bucket[split].items())}
        order: list[str] = []
        while any(queues.values()):
            for src in sorted(queues):
                if queues[src]:
                    order.append(queues[src].pop(0))
        if len(order) < sizes[split]:
            issues.add("split", None, f"not enough documents: {len(order)} eligible for {split} < {sizes[split]} requested; the split shrinks")
        for base in order[: sizes[split]]:
            for doc in base_of[base]:
                out.append({**doc, "split": split})
    return sorted(out, key=lambda d: (SPLITS.index(d["split"]), d["doc_id"]))


def corpus_stats(extracted: list[dict], selected: list[dict], issues: IssueLog) -> dict:
    by_split = Counter(d["split"] for d in selected)
    by_source_split = Counter(f"{d['split']}/{d['source']}" for d in selected)
    tokens = [d["n_tokens"] for d in selected]
    return {
        "n_extracted": len(extracted),
        "extracted_by_source": dict(sorted(Counter(d["source"] for d in extracted).items())),
        "n_selected": len(selected),
        "by_split": dict(sorted(by_split.items())),
        "by_split_source": dict(sorted(by_source_split.items())),
        "tokens": {
            "min": min(tokens) if tokens else 0,
            "max": max(tokens) if tokens else 0,
            "mean": round(sum(tokens) / len(tokens), 1) if tokens else 0,
            "values": tokens,
        },
        "n_truncated": sum(1 for d in selected if d.get("truncated")),
        "dropped": issues.counts(),
    }
