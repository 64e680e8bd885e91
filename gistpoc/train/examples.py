"""Turn dataset records into tokenised training sequences: one per document, all its questions after one
gist span (the passkey windows of the stream are in ``gistpoc.train.stream``)."""

from __future__ import annotations

from collections import OrderedDict

from gistpoc.gist.collator import GistExample
from gistpoc.gist.template import encode_answer, encode_prefix, encode_question

QTYPE_ORDER = ("factual", "global", "reasoning", "self_study", "passkey")   # self_study: gistpoc.train.self_study


def group_by_doc(records: list[dict]) -> "OrderedDict[str, list[dict]]":
    docs: OrderedDict[str, list[dict]] = OrderedDict()
    for rec in records:
        docs.setdefault(rec["doc_id"], []).append(rec)
    for recs in docs.values():
        recs.sort(key=lambda r: QTYPE_ORDER.index(r["qtype"]))
    return docs


def doc_example(tokenizer, template, gist_ids: list[int], recs: list[dict], qtypes=QTYPE_ORDER, chunk_tokens: int = 0) -> dict:
    """All questions of one document after one gist span (a row of the tokenised table); with ``chunk_tokens`` in the
    chunk-wise layout (N gists per chunk; the dataset's gist indices are the whole-document layout's)."""
    enc = encode_prefix(tokenizer, template, recs[0]["context"], gist_ids, chunk_tokens)
    indexed = next((r for r in recs if "gist_start_idx" in r), None)   # self-study records carry no gist indices
    if not chunk_tokens and indexed is not None:
        assert enc.gist_start == indexed["gist_start_idx"], "dataset gist indices disagree with the tokenizer/template"
    segs = [r for r in recs if r["qtype"] in qtypes]
    return {
        "doc_id": recs[0]["doc_id"],
        "kind": "document",
        "prefix_ids": enc.prefix_ids,
        "gist_start": enc.gist_start,
        "gist_end": enc.gist_end,
        "context_tokens": enc.context_tokens,
        "chunks": enc.chunks,
        "question_ids": [encode_question(tokenizer, template, r["question"]) for r in segs],
        "answer_ids": [encode_answer(tokenizer, template, r["answer"]) for r in segs],
    }


def strip_passkey(rec: dict) -> str:
    """The document text without its planted passkey sentence."""
    ctx = rec["context"]
    return (ctx[: rec["passkey_char_start"]] + ctx[rec["passkey_char_end"] :]).replace("\n\n\n\n", "\n\n")


def to_example(row: dict) -> GistExample:
    return GistExample(list(row["prefix_ids"]), int(row["gist_start"]), int(row["gist_end"]),
                       [(list(q), list(a)) for q, a in zip(row["question_ids"], row["answer_ids"])],
                       chunks=[tuple(c) for c in row.get("chunks", [])])


def context_spans(row: dict) -> list[tuple[int, int]]:
    """Where a tokenised row's (or an ``EncodedPrompt``'s fields') context tokens lie in ``prefix_ids``: one span, or one
    per chunk (chunk-wise layout)."""
    return [(cs, gs) for cs, gs, _ in row.get("chunks", [])] or [(row["gist_start"] - row["context_tokens"], row["gist_start"])]
