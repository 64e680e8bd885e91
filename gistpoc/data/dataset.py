"""Assemble the design's JSONL records: one per question, with exact gist token indices."""

from __future__ import annotations

from gistpoc.data.passkey import PASSKEY_QUESTION, inject_passkey, shift_span
from gistpoc.gist.template import encode_prefix, prompt_template
from gistpoc.model import GIST_TEMPLATE


def inject_all(docs: list[dict], seed: int, digits: int) -> list[dict]:
    """Passkey-injected copy of every document (seeded per document, so reruns are identical)."""
    out = []
    for doc in docs:
        info = inject_passkey(doc["text"], f"{seed}:{doc['doc_id']}", digits)
        out.append({"doc_id": doc["doc_id"], **info})
    return out


def build_records(docs: list[dict], qa_by_doc: dict[str, list[dict]], passkeys: dict[str, dict], tokenizer, instruction: str, n_gist: int) -> list[dict]:
    """Records for one split and one gist count; ``tokenizer`` must already hold the gist tokens."""
    template = prompt_template(tokenizer, instruction)
    gist_ids = tokenizer.convert_tokens_to_ids([GIST_TEMPLATE.format(i) for i in range(n_gist)])
    gist_str = "".join(GIST_TEMPLATE.format(i) for i in range(n_gist))
    records = []
    for doc in docs:
        pk = passkeys[doc["doc_id"]]
        enc = encode_prefix(tokenizer, template, pk["context"], gist_ids)
        insert_len = pk["context"].__len__() - len(doc["text"])
        questions = list(qa_by_doc.get(doc["doc_id"], []))
        questions.append({"qtype": "passkey", "question": PASSKEY_QUESTION, "answer": pk["passkey"], "evidence": [[pk["passkey_char_start"], pk["passkey_char_end"]]]})
        for _qi, qa in enumerate(questions):
            evidence = qa["evidence"] if qa["qtype"] == "passkey" else [shift_span(s, pk["passkey_char_start"], insert_len) for s in qa["evidence"]]
            records.append(
                {
                    "id": f"{doc['doc_id']}::{qa['qtype']}",
                    "doc_id": doc["doc_id"],
                    "source": doc["source"],
                    "title": doc["title"],
                    "split": doc["split"],
                    "qtype": qa["qtype"],
                    "instruction": instruction,
                    "context": pk["context"],
                    "gist_tokens": gist_str,
                    "n_gist": n_gist,
                    "question": qa["question"],
                    "answer": qa["answer"],
                    "evidence": evidence,
                    "gist_start_idx": enc.gist_start,
                    "gist_end_idx": enc.gist_end,
                    "context_tokens": enc.context_tokens,
                    "passkey": pk["passkey"],
                    "passkey_depth": pk["passkey_depth"],
                    "passkey_char_start": pk["passkey_char_start"],
                    "passkey_char_end": pk["passkey_char_end"],
                }
            )
    return records
