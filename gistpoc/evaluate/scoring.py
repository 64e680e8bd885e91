"""Scores of generated answers, a CPU step apart from generation (the score_answers rule): editing a metric or
the proxy's embedder rescores the saved answers and never reruns a GPU job.

The global-theme / reasoning proxy embeds answer and reference with ``eval.metric_embedder``, a model of its own,
so changing the RAG retriever (``eval.rag.embedding_model``) does not change any method's proxy score."""

from __future__ import annotations

import re

from gistpoc.evaluate.metrics import exact_match, passkey_correct, rouge_l, token_f1


def keylike_number(prediction: str, reference: str, digits: int = 5) -> float:
    """1.0 when an answer to a non-passkey question holds a standalone ``digits``-digit number that its reference does
    not: the gist answering as a passkey detector (issue 27's "text, not five-digit numbers"), else 0.0. Here, not in
    ``metrics`` (which the answering runner imports), so that adding it rescored the answers without regenerating them."""
    def numbers(text):
        return set(re.findall(rf"(?<!\d)\d{{{digits}}}(?!\d)", text or ""))

    return float(bool(numbers(prediction) - numbers(reference)))


def score(record: dict, prediction: str | None, embedder=None, passkey_digits: int = 5) -> dict:
    """Per-item quality scores for the record's question type (None where not applicable). ``keylike``: an answer to a
    factual / global / reasoning question that holds a ``passkey_digits``-digit number its reference lacks."""
    if prediction is None:
        return {"em": None, "f1": None, "passkey_correct": None, "rouge_l": None, "embed_sim": None, "keylike": None}
    ref = record["answer"]
    out = {"em": None, "f1": None, "passkey_correct": None, "rouge_l": rouge_l(prediction, ref), "embed_sim": None,
           "keylike": None if record["qtype"] == "passkey" else keylike_number(prediction, ref, passkey_digits)}
    if record["qtype"] == "factual":
        out["em"], out["f1"] = exact_match(prediction, ref), token_f1(prediction, ref)
    elif record["qtype"] == "passkey":
        out["passkey_correct"] = passkey_correct(prediction, ref)
    if embedder is not None and record["qtype"] in ("global", "reasoning"):
        a, b = embedder([prediction or " ", ref])
        out["embed_sim"] = float(sum(x * y for x, y in zip(a, b)))
    return out


def score_rows(rows: list[dict], embedder=None, passkey_digits: int = 5) -> list[dict]:
    """Each answer row with its ``scores`` (the row holds the question type and the reference)."""
    return [{**r, "scores": score({"answer": r["reference"], "qtype": r["qtype"]}, r.get("prediction"), embedder, passkey_digits)}
            for r in rows]
