"""Self-study (issue 27; Cartridges, Eyuboglu et al. 2025): the base model reads each training document in full and
answers a few prompts about it (a summary, the main points, a continuation); its own answers become extra
question-answer segments of stage 2, learned through the gist. With ``train.aux.self_distill`` > 0 the same segments
also carry the KL to the base model reading the document (adapter off), so the targets and the teacher agree: context
distillation on the teacher's own outputs, where the grounded questions' references are text the teacher never wrote.

``self_study_records`` returns one record per (document, prompt) shaped like the dataset's (``qtype: self_study``),
so the training code treats them as any other question of the document."""

from __future__ import annotations

import logging

from gistpoc.evaluate.answerer import make_answerer
from gistpoc.gist.cache import compress_context
from gistpoc.gist.template import encode_prefix, encode_question, prompt_template
from gistpoc.train.examples import group_by_doc

log = logging.getLogger("gistpoc")

QTYPE = "self_study"
GIST_FIELDS = ("gist_tokens", "n_gist", "gist_start_idx", "gist_end_idx")


def self_study_records(loaded, records: list[dict], prompts: list[str], instruction: str, max_new_tokens: int,
                       engine: str = "eager", batch: int = 8) -> list[dict]:
    """The base model's greedy answers to ``prompts`` about every document of ``records`` (read in full, with the gist
    instruction and no gist tokens), as records of ``qtype`` ``self_study``; an empty answer is left out."""
    if not prompts:
        return []
    tok = loaded.tokenizer
    template = prompt_template(tok, instruction)
    answerer = make_answerer(engine, loaded, batch)
    questions = [encode_question(tok, template, p) for p in prompts]
    docs = list(group_by_doc([r for r in records if r["qtype"] != QTYPE]).items())
    # each document is read once into a cache of all its positions (the same keys and values as the prompt
    # document + question would make), then every prompt continues it; the documents of a pass share it, so one pass
    # answers per_pass // len(prompts) documents' prompts together (a full-document prompt would go one row at a time)
    per_doc = len(questions)
    docs_per_pass = max(1, answerer.per_pass(max(len(q) for q in questions)) // per_doc)
    out = []
    for first in range(0, len(docs), docs_per_pass):
        group = docs[first : first + docs_per_pass]
        caches = []
        for _, recs in group:
            prefix = encode_prefix(tok, template, recs[0]["context"], []).prefix_ids
            caches.append(compress_context(loaded.model, prefix, 0, len(prefix)))
        rows = [(d, k) for d in range(len(group)) for k in range(per_doc)]
        size = answerer.per_pass(max(len(q) for q in questions))
        gens = []
        for i in range(0, len(rows), size):
            part = rows[i : i + size]
            gens += answerer.generate([questions[k] for _, k in part], [caches[d].next_position for d, _ in part], max_new_tokens,
                                      prefix=[caches[d] for d, _ in part])
        for (d, k), gen in zip(rows, gens):
            doc_id, recs = group[d]
            answer = tok.decode(gen.token_ids, skip_special_tokens=True).strip()
            if not answer:
                log.warning("skipped %s: self-study prompt %d: the base model wrote nothing", doc_id, k)
                continue
            row = {k2: v for k2, v in recs[0].items() if k2 not in GIST_FIELDS}   # one file serves every gist-N
            out.append({**row, "id": f"{doc_id}::{QTYPE}{k}", "qtype": QTYPE, "question": prompts[k], "answer": answer, "evidence": []})
        log.info("self-study: %d of %d documents answered", min(first + docs_per_pass, len(docs)), len(docs))
    return out
