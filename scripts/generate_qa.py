#!/usr/bin/env python
"""Generate the three question types (factual, global, reasoning) for every selected document.

Backends: grounded (offline, from the document), openai (any OpenAI-compatible endpoint), local
(a transformers chat model). Each document's result is cached on disk, keyed by the document and
the backend settings and the code that builds the prompt (gistpoc.codehash), so an interrupted run resumes where it stopped and never repeats a paid call.
"""

import json
import logging
from pathlib import Path

from gistpoc.cli import json_arg, parser, run
from gistpoc.codehash import code_hash
from gistpoc.qa.grounded import grounded_qa
from gistpoc.qa.llm_questions import QTYPES, llm_questions, new_counts
from gistpoc.qa.openai_backend import CachedChatClient, EndpointError, ResponseValidationError, thread_map
from gistpoc.utils import IssueLog, read_jsonl, stable_hash, write_json, write_jsonl, write_text_atomic

log = logging.getLogger("gistpoc")


def main(args):
    docs = read_jsonl(args.documents)
    qa_cfg = args.qa
    backend = qa_cfg["backend"]
    oa = qa_cfg.get("openai", {})
    # how the requests are sent (in flight at once, which splits) is not what they ask: outside the document's key
    settings = {"backend": backend, **({"openai": {k: v for k, v in oa.items() if k not in ("concurrency", "splits")}} if backend == "openai" else {}),
                **({"local": qa_cfg["local"]} if backend == "local" else {}),
                # the prompt, validation and parsing code: a changed prompt is a new request, never a cache hit
                "code": code_hash("scripts/generate_qa.py")}
    cache = Path(args.cache_dir) / backend
    cache.mkdir(parents=True, exist_ok=True)
    llm_types = QTYPES
    filters = new_counts()  # the LLM writer's checks (openai backend): what was written, dropped and why
    writes = lambda doc: True  # noqa: E731  (which documents this backend writes for; the others get grounded questions)
    if backend == "openai":
        client = CachedChatClient(oa, Path(args.cache_dir) / "openai_requests")
        llm_splits = set(oa.get("splits", ["train", "val", "test"]))
        writes = lambda doc: doc["split"] in llm_splits  # noqa: E731
        llm_types = tuple(oa.get("qtypes", QTYPES))  # the types the LLM writes; the grounded backend writes the rest

        def generate(doc):
            counts = new_counts()
            return {"questions": llm_questions(doc, client, counts=counts, qtypes=llm_types), "counts": counts}
    elif backend == "local":
        from gistpoc.qa.local_backend import LocalChatModel, local_qa

        chat = LocalChatModel(qa_cfg["local"]["model"], qa_cfg["local"]["max_new_tokens"])
        generate = lambda doc: local_qa(doc, chat)  # noqa: E731
    else:
        generate = grounded_qa

    def one(doc):
        """(the document's questions, or a ResponseValidationError), from the cache when it has them."""
        if not writes(doc):
            return grounded_qa(doc), "grounded"
        key = stable_hash({"text": doc["text"], "title": doc["title"], **settings}, 24)
        path = cache / f"{key}.json"
        if backend != "grounded" and path.exists():  # grounded is cheap and follows the code: never cached
            return json.loads(path.read_text()), backend
        try:
            qas = generate(doc)
        except ResponseValidationError as err:
            return err, backend
        if backend != "grounded":
            write_text_atomic(path, json.dumps(qas, sort_keys=True))
        return qas, backend

    try:  # documents in flight at once (qa.openai.concurrency): each finished one is cached, so a rerun resumes
        results = thread_map(one, docs, oa.get("concurrency", 1) if backend == "openai" else 1)
    except EndpointError as err:
        done = len(list(cache.glob("*.json")))
        raise EndpointError(f"{err}. {done} documents are cached in {cache}; rerun to resume.") from err
    issues = IssueLog()
    records = []
    for doc, (qas, made_by) in zip(docs, results):
        if isinstance(qas, ResponseValidationError):
            issues.add(args.documents, doc["doc_id"], f"invalid generated Q&A: {qas}")
            continue
        if isinstance(qas, dict):  # the LLM writer: its questions and its per-document filter counts
            for qtype in QTYPES:
                for k, v in qas["counts"][qtype].items():
                    filters[qtype][k] += v
            qas = [*qas["questions"], *(q for q in grounded_qa(doc) if q["qtype"] not in llm_types)]
            qas.sort(key=lambda q: QTYPES.index(q["qtype"]))   # stable: a document's questions in type order
        by_writer = set(llm_types) if made_by == "openai" else set(QTYPES)
        for qa in qas:
            records.append({"doc_id": doc["doc_id"], "split": doc["split"], "backend": made_by if qa["qtype"] in by_writer else "grounded", **qa})
        missing = {"factual", "global", "reasoning"} - {q["qtype"] for q in qas}
        for qtype in sorted(missing):
            why = "the writer's question was dropped by its checks (llm_filters)" if qtype in by_writer and made_by == "openai" else "the document offers no basis"
            issues.add(args.documents, doc["doc_id"], f"no {qtype} question: {why}")
    write_jsonl(args.out, records)
    write_json(args.issues, {"n_questions": len(records), **({"llm_qtypes": list(llm_types), "llm_filters": filters} if backend == "openai" else {}), **issues.to_dict()})
    log.info("%d questions for %d documents (%d problems)", len(records), len(docs), len(issues.items))


if __name__ == "__main__":
    p = parser(__doc__)
    p.add_argument("--documents", required=True)
    p.add_argument("--qa", type=json_arg, required=True, help="the qa: section of the config, as JSON")
    p.add_argument("--cache-dir", default="results/.cache/qa")
    p.add_argument("--out", required=True)
    p.add_argument("--issues", required=True)
    run(main, p)
