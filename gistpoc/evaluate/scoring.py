"""Scores of generated answers, a CPU step apart from generation (the score_answers rule): editing a metric or
the proxy's embedder rescores the saved answers and never reruns a GPU job.

The global-theme / reasoning proxy embeds answer and reference with ``eval.metric_embedder``, a model of its own,
so changing the RAG retriever (``eval.rag.embedding_model``) does not change any method's proxy score."""

from __future__ import annotations

from gistpoc.evaluate.metrics import exact_match, passkey_correct, rouge_l, token_f1


def score(record: dict, prediction: str | None, embedder=None) -> dict:
    """Per-item quality scores for the record's question type (None where not applicable)."""
    if prediction is None:
        return {"em": None, "f1": None, "passkey_correct": None, "rouge_l": None, "embed_sim": None}
    ref = record["answer"]
    out = {"em": None, "f1": None, "passkey_correct": None, "rouge_l": rouge_l(prediction, ref), "embed_sim": None}
    if record["qtype"] == "factual":
        out["em"], out["f1"] = exact_match(prediction, ref), token_f1(prediction, ref)
    elif record["qtype"] == "passkey":
        out["passkey_correct"] = passkey_correct(prediction, ref)
    if embedder is not None and record["qtype"] in ("global", "reasoning"):
        a, b = embedder([prediction or " ", ref])
        out["embed_sim"] = float(sum(x * y for x, y in zip(a, b)))
    return out


def score_rows(rows: list[dict], embedder=None) -> list[dict]:
    """Each answer row with its ``scores`` (the row holds the question type and the reference)."""
    return [{**r, "scores": score({"answer": r["reference"], "qtype": r["qtype"]}, r.get("prediction"), embedder)} for r in rows]
