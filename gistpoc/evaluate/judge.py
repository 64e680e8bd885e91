"""LLM-as-judge for global-theme and reasoning answers through the OpenAI-compatible backend.

Blinded: the judge sees the question, the reference and one candidate answer, never the method; items are shuffled.
Rubrics (the design's):
- global theme: is the candidate "coherent & complete"? -> ``{"verdict": "yes"|"no", "reason": str}``; score 1 or 0;
- reasoning: a 3-point rating -> ``{"rating": 1|2|3, "reason": str}`` (3: correct and complete, 2: partly correct or
  incomplete, 1: wrong, off-topic or no answer); score (rating - 1) / 2, so ``reasoning_judge_acc`` is the mean
  normalised rating (1.0 = every answer rated 3).

``calibrate`` measures the judge on hand-labelled answers (``tests/fixtures/judge_calibration.jsonl``): agreement with
the labels, the same answer judged with the candidate placed before the reference instead of after (position
consistency), and the answer padded with a neutral filler sentence (length bias), beside the embedding proxy's
agreement with the same labels.
"""

from __future__ import annotations

import random

from gistpoc.evaluate.scoring import score
from gistpoc.qa.openai_backend import CachedChatClient, ResponseValidationError, thread_map

GLOBAL_SYSTEM = (
    "You grade answers about a document. Given a question, a reference answer and a candidate answer, decide whether "
    "the candidate is coherent and complete: it states the document's main point as the reference does, without "
    'contradictions. Reply with JSON only: {"verdict": "yes" or "no", "reason": "<one sentence>"}.'
)
REASONING_SYSTEM = (
    "You grade answers to a question that needs two parts of a document combined. Given the question, a reference "
    "answer and a candidate answer, rate the candidate: 3 = correct and complete (it makes the reference's connection), "
    "2 = partly correct or incomplete, 1 = wrong, off-topic or no answer. Reply with JSON only: "
    '{"rating": 1, 2 or 3, "reason": "<one sentence>"}.'
)
# reasoning_protocol "two_checks": the rating from two yes/no questions, the form in which a small judge agrees with
# hand labels on the global theme (one 3-point request from Qwen2.5-Coder-1.5B agreed at chance, 0.30)
CHECK_SYSTEMS = {
    "correct": (
        "You grade answers to a question that needs two parts of a document combined. Given the question, a reference "
        "answer and a candidate answer, decide whether the candidate is correct: what it says about the parts agrees "
        "with the reference, without contradicting it, inventing facts or drifting off-topic (a generic answer that "
        'names nothing from the reference is not correct). Reply with JSON only: {"verdict": "yes" or "no", "reason": '
        '"<one sentence>"}.'
    ),
    "complete": (
        "You grade answers to a question that needs two parts of a document combined. Given the question, a reference "
        "answer and a candidate answer, decide whether the candidate is complete: it says something specific about "
        "each of the two parts, as the reference does, and connects them. Reply with JSON only: "
        '{"verdict": "yes" or "no", "reason": "<one sentence>"}.'
    ),
}
REASONING_PROTOCOLS = ("rating", "two_checks")
# a neutral sentence that adds length and no content (the length-bias probe)
PADDING = " To put it in other words and to be thorough about it, the answer given above is the one stated here."


def validate_verdict(obj: dict) -> dict:
    verdict = str(obj.get("verdict", "")).strip().lower()
    if verdict not in ("yes", "no"):
        raise ResponseValidationError(f"verdict must be yes or no, got {obj.get('verdict')!r}")
    return {"verdict": verdict, "reason": str(obj.get("reason", ""))[:500]}


def validate_rating(obj: dict) -> dict:
    try:
        rating = int(str(obj.get("rating", "")).strip())
    except ValueError:
        rating = None
    if rating not in (1, 2, 3):
        raise ResponseValidationError(f"rating must be 1, 2 or 3, got {obj.get('rating')!r}")
    return {"rating": rating, "reason": str(obj.get("reason", ""))[:500]}


def judge_messages(item: dict, candidate_first: bool = False, check: str | None = None) -> list[dict]:
    """The blinded request: question, reference and candidate (after the reference, or before it); ``check`` (a key of
    ``CHECK_SYSTEMS``) asks one of the reasoning protocol "two_checks"' yes/no questions instead of the rating."""
    system = CHECK_SYSTEMS[check] if check else REASONING_SYSTEM if item.get("qtype") == "reasoning" else GLOBAL_SYSTEM
    q = f"Question: {item['question']}"
    ref = f"Reference answer: {item['reference']}"
    cand = f"Candidate answer: {item['prediction'] or '(no answer)'}"
    return [{"role": "system", "content": system},
            {"role": "user", "content": "\n".join([q, cand, ref] if candidate_first else [q, ref, cand])}]


def judge_one(item: dict, client: CachedChatClient, model: str, candidate_first: bool = False, protocol: str = "rating") -> dict:
    """One judgment: ``verdict`` (global) or ``rating`` (reasoning), ``reason`` and ``score`` (None if the reply
    stayed invalid). Reasoning with ``protocol="two_checks"``: two yes/no requests, correct and complete; rating 1 if
    not correct, 2 if correct and not complete, 3 if both (the reasons joined)."""
    reasoning = item.get("qtype") == "reasoning"
    if reasoning and protocol == "two_checks":
        checks, errors = {}, []   # both questions are always asked (an invalid reply to one does not hide the other)
        for check in CHECK_SYSTEMS:
            try:
                checks[check] = client.complete_json(client.request(judge_messages(item, candidate_first, check), model=model),
                                                     validate_verdict)
            except ResponseValidationError as err:
                errors.append(f"{check}: {err}")
        if errors:
            return {"verdict": None, "rating": None, "reason": f"invalid judge reply ({'; '.join(errors)})"[:500], "score": None}
        correct, complete = (checks[c]["verdict"] == "yes" for c in CHECK_SYSTEMS)
        rating = 1 + correct + (correct and complete)
        reason = "; ".join(f"{c}: {v['verdict']} ({v['reason']})" for c, v in checks.items())
        return {"verdict": None, "rating": rating, "reason": reason[:500], "score": (rating - 1) / 2}
    if protocol not in REASONING_PROTOCOLS:
        raise ValueError(f"reasoning protocol must be one of {REASONING_PROTOCOLS}, got {protocol!r}")
    body = client.request(judge_messages(item, candidate_first), model=model)
    try:
        v = client.complete_json(body, validate_rating if reasoning else validate_verdict)
    except ResponseValidationError as err:
        return {"verdict": None, "rating": None, "reason": f"invalid judge reply: {err}", "score": None}
    if reasoning:
        return {"verdict": None, **v, "score": (v["rating"] - 1) / 2}
    return {"rating": None, **v, "score": float(v["verdict"] == "yes")}


def judge_items(items: list[dict], client: CachedChatClient, model: str, seed: int, protocol: str = "rating") -> list[dict]:
    """``items``: dicts with key, qtype, question, reference, prediction (no method). Judged in a seeded shuffle;
    returned sorted by key, with verdict / rating, reason and score."""
    order = items[:]
    random.Random(seed).shuffle(order)
    workers = client.cfg.get("concurrency", 1)
    out = thread_map(lambda it: {"key": it["key"], "qtype": it.get("qtype", "global"), **judge_one(it, client, model, protocol=protocol)},
                     order, workers)
    return sorted(out, key=lambda r: r["key"])


def _label_score(item: dict) -> float:
    """A hand label as a score on the judge's scale: global yes/no -> 1/0, reasoning 1-3 -> 0, 0.5, 1."""
    return float(item["label"] == "yes") if item["qtype"] == "global" else (int(item["label"]) - 1) / 2


def calibrate(fixture: list[dict], client: CachedChatClient, model: str, embedder=None, proxy_threshold: float = 0.5,
              protocol: str = "rating") -> dict:
    """The judge against hand labels. Per question type: items, agreement with the labels (exact: same verdict, or
    same rating), position consistency (same score with the candidate before the reference), padding flips (the score
    changes when a neutral sentence is appended), invalid replies; and, for global items, the proxy's agreement with
    the labels (embedding similarity >= threshold vs label yes) when an embedder is given."""
    out = {}
    for qtype in ("global", "reasoning"):
        items = [it for it in fixture if it["qtype"] == qtype]
        if not items:
            continue
        agree = same_swapped = padded_flips = invalid = 0
        proxy_agree = 0
        three = thread_map(lambda it: (judge_one(it, client, model, protocol=protocol),
                                       judge_one(it, client, model, candidate_first=True, protocol=protocol),
                                       judge_one({**it, "prediction": (it["prediction"] or "") + PADDING}, client, model, protocol=protocol)),
                           items, client.cfg.get("concurrency", 1))
        for it, (base, swapped, padded) in zip(items, three):
            if base["score"] is None:
                invalid += 1
                continue
            agree += base["score"] == _label_score(it)
            same_swapped += swapped["score"] == base["score"]
            padded_flips += padded["score"] is not None and padded["score"] != base["score"]
        if embedder is not None and qtype == "global":  # the proxy on every item, judged or not
            for it in items:  # the proxy's own similarity (gistpoc.evaluate.scoring), as the summary thresholds it
                sim = score({"answer": it["reference"], "qtype": "global"}, it["prediction"] or " ", embedder)["embed_sim"]
                proxy_agree += (sim >= proxy_threshold) == (it["label"] == "yes")
        valid = len(items) - invalid
        out[qtype] = {"items": len(items), "invalid": invalid, "agreement": agree / valid if valid else None,
                      **({"protocol": protocol} if qtype == "reasoning" else {}),
                      "position_consistency": same_swapped / valid if valid else None,
                      "padding_flips": padded_flips / valid if valid else None}
        if embedder is not None and qtype == "global":
            out[qtype]["proxy_agreement"] = proxy_agree / len(items)
    return out
