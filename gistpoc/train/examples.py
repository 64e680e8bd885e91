"""Turn dataset records into tokenised training sequences (one per document, plus passkey extras).

The schedule (document order per epoch, passkey extras, curriculum lengths) is fixed up front from
the seed, tokenised once and stored as a Hugging Face ``datasets`` Arrow table (memory-mapped).
"""

from __future__ import annotations

import math
import random
from collections import OrderedDict

from gistpoc.data.passkey import PASSKEY_QUESTION, inject_passkey
from gistpoc.gist.collator import GistExample
from gistpoc.gist.template import encode_answer, encode_prefix, encode_question, prompt_template

QTYPE_ORDER = ("factual", "global", "reasoning", "passkey")


def group_by_doc(records: list[dict]) -> "OrderedDict[str, list[dict]]":
    docs: OrderedDict[str, list[dict]] = OrderedDict()
    for rec in records:
        docs.setdefault(rec["doc_id"], []).append(rec)
    for recs in docs.values():
        recs.sort(key=lambda r: QTYPE_ORDER.index(r["qtype"]))
    return docs


def doc_example(tokenizer, template, gist_ids: list[int], recs: list[dict], qtypes=QTYPE_ORDER) -> dict:
    """All questions of one document after one gist span (a row of the tokenised table)."""
    enc = encode_prefix(tokenizer, template, recs[0]["context"], gist_ids)
    assert enc.gist_start == recs[0]["gist_start_idx"], "dataset gist indices disagree with the tokenizer/template"
    segs = [r for r in recs if r["qtype"] in qtypes]
    return {
        "doc_id": recs[0]["doc_id"],
        "kind": "document",
        "prefix_ids": enc.prefix_ids,
        "gist_start": enc.gist_start,
        "gist_end": enc.gist_end,
        "question_ids": [encode_question(tokenizer, template, r["question"]) for r in segs],
        "answer_ids": [encode_answer(tokenizer, template, r["answer"]) for r in segs],
    }


def strip_passkey(rec: dict) -> str:
    """The document text without its planted passkey sentence."""
    ctx = rec["context"]
    return (ctx[: rec["passkey_char_start"]] + ctx[rec["passkey_char_end"] :]).replace("\n\n\n\n", "\n\n")


def crop_tokens(tokenizer, text: str, max_tokens: int) -> str:
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    offs = enc["offset_mapping"]
    if len(offs) <= max_tokens:
        return text
    return text[: offs[max_tokens - 1][1]]


def passkey_example(tokenizer, template, gist_ids, rec: dict, max_context_tokens: int, seed_key: str) -> dict:
    """A passkey-only sequence: a fresh passkey planted in a (possibly shortened) copy of the document."""
    text = crop_tokens(tokenizer, strip_passkey(rec), max_context_tokens)
    pk = inject_passkey(text, seed_key)
    enc = encode_prefix(tokenizer, template, pk["context"], gist_ids)
    return {
        "doc_id": rec["doc_id"],
        "kind": "passkey",
        "prefix_ids": enc.prefix_ids,
        "gist_start": enc.gist_start,
        "gist_end": enc.gist_end,
        "question_ids": [encode_question(tokenizer, template, PASSKEY_QUESTION)],
        "answer_ids": [encode_answer(tokenizer, template, pk["passkey"])],
    }


def curriculum_tokens(position: float, start_tokens: int, full_tokens: int, fraction: float) -> int:
    """Context length for passkey extras at ``position`` (0..1 of the schedule): linear ramp."""
    if fraction <= 0 or position >= fraction:
        return full_tokens
    return int(start_tokens + (full_tokens - start_tokens) * position / fraction)


def build_schedule(tokenizer, instruction: str, gist_ids: list[int], records: list[dict], cfg: dict, seed: int) -> list[dict]:
    """Every micro-step's sequence for the whole run, in order."""
    template = prompt_template(tokenizer, instruction)
    docs = group_by_doc(records)
    doc_rows = {d: doc_example(tokenizer, template, gist_ids, recs) for d, recs in docs.items()}
    rng = random.Random(seed)
    share = cfg.get("passkey_share", 0.0)
    ids = list(docs)
    plan: list[tuple[str, str]] = []
    for _epoch in range(cfg.get("epochs", 1)):
        order = ids[:]
        rng.shuffle(order)
        credit = 0.0
        for d in order:
            plan.append(("document", d))
            credit += share
            while credit >= 1.0 - 1e-9:
                plan.append(("passkey", d))
                credit -= 1.0
    rows = []
    full = max(len(r["prefix_ids"]) for r in doc_rows.values())
    for i, (kind, d) in enumerate(plan):
        if kind == "document":
            rows.append(doc_rows[d])
        else:
            limit = curriculum_tokens(i / max(1, len(plan)), cfg.get("curriculum_start_tokens", 64), full, cfg.get("curriculum_fraction", 0.0))
            rows.append(passkey_example(tokenizer, template, gist_ids, docs[d][0], limit, f"{seed}:{i}:{d}"))
    return rows


def to_example(row: dict) -> GistExample:
    return GistExample(list(row["prefix_ids"]), int(row["gist_start"]), int(row["gist_end"]), [(list(q), list(a)) for q, a in zip(row["question_ids"], row["answer_ids"])])


def n_optimizer_steps(n_rows: int, batch_size: int, grad_accum: int, max_steps: int = 0) -> int:
    steps = math.ceil(n_rows / (batch_size * grad_accum))
    return min(steps, max_steps) if max_steps else steps
