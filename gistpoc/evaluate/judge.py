"""LLM-as-judge for global-theme (and reasoning) answers through the OpenAI-compatible backend.

Blinded: the judge sees question, reference and one answer, never the method; items are shuffled.
Rubric of the design: is the answer "coherent & complete"? -> {"verdict": "yes"|"no", "reason": str}.
"""

from __future__ import annotations

import random

from gistpoc.qa.openai_backend import CachedChatClient, ResponseValidationError

JUDGE_SYSTEM = (
    "You grade answers about a document. Given a question, a reference answer and a candidate answer, "
    "decide whether the candidate is coherent and complete: it states the document's main point as the "
    "reference does, without contradictions. Reply with JSON only: "
    '{"verdict": "yes" or "no", "reason": "<one sentence>"}.'
)


def validate_verdict(obj: dict) -> dict:
    verdict = str(obj.get("verdict", "")).strip().lower()
    if verdict not in ("yes", "no"):
        raise ResponseValidationError(f"verdict must be yes or no, got {obj.get('verdict')!r}")
    return {"verdict": verdict, "reason": str(obj.get("reason", ""))[:500]}


def judge_items(items: list[dict], client: CachedChatClient, model: str, seed: int) -> list[dict]:
    """``items``: dicts with key, question, reference, prediction. Returns key, verdict, reason, score."""
    order = items[:]
    random.Random(seed).shuffle(order)
    out = []
    for it in order:
        body = client.request([
            {"role": "system", "content": JUDGE_SYSTEM},
            {"role": "user", "content": f"Question: {it['question']}\nReference answer: {it['reference']}\nCandidate answer: {it['prediction'] or '(no answer)'}"},
        ], model=model)
        try:
            v = client.complete_json(body, validate_verdict)
        except ResponseValidationError as err:
            v = {"verdict": None, "reason": f"invalid judge reply: {err}"}
        out.append({"key": it["key"], **v, "score": None if v["verdict"] is None else float(v["verdict"] == "yes")})
    return sorted(out, key=lambda r: r["key"])
