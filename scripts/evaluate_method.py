#!/usr/bin/env python
"""Answer the test questions with one method (closed_book, full_context, rag, gist{N}, rag_gist{N}); unscored
(score_answers scores them)."""

import logging
from pathlib import Path

from gistpoc.baselines.rag import Retriever, SentenceEmbedder
from gistpoc.cli import eval_items, run
from gistpoc.evaluate.runner import run_method
from gistpoc.evaluate.script import answer_parser
from gistpoc.methods import gist_n
from gistpoc.methods import parse as parse_method
from gistpoc.model import load_model
from gistpoc.utils import host_environment, read_json, write_json, write_jsonl

log = logging.getLogger("gistpoc")


def main(args):
    records = eval_items(args)
    method = parse_method(args.method)
    rag_gist = method.kind == "hybrid"
    n_gist = gist_n(args.method)
    if (args.scramble_context or args.other_document) and not n_gist:
        raise SystemExit("--scramble-context and --other-document are controls for gist methods only")
    loaded = load_model(args.model, args.model_ref, n_gist=n_gist, adapter_dir=args.checkpoint)
    retriever = None
    if args.method == "rag" or rag_gist:
        manifest = read_json(args.rag_manifest)
        retriever = Retriever(manifest["db"], manifest["collection"], SentenceEmbedder(args.embedding_model))
    instruction = args.gist_instruction if n_gist else args.baseline_instruction
    rows = run_method(args.method, loaded, records, instruction, args.max_new_tokens, args.warmup_items, retriever, args.top_k,
                      Path(args.cache_dir) if n_gist and args.cache_dir else None, scramble=args.scramble_context,
                      engine=args.engine, engine_batch=args.engine_batch, other_document=args.other_document)
    if args.label:
        for r in rows:
            r["method"] = args.label
    write_jsonl(args.out, rows)
    write_json(args.environment_out, {"method": args.label or args.method, **host_environment()})
    ok = [r for r in rows if r["status"] == "ok"]
    log.info("%s: %d answers (%d oom)", args.method, len(rows), len(rows) - len(ok))


if __name__ == "__main__":
    p = answer_parser(__doc__)
    p.add_argument("--method", required=True)
    p.add_argument("--checkpoint", default=None, help="LoRA checkpoint dir (gist methods)")
    p.add_argument("--gist-instruction", required=True)
    p.add_argument("--embedding-model", required=True, help="the RAG retriever's embedding model (eval.rag.embedding_model)")
    p.add_argument("--rag-manifest", default=None)
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--cache-dir", default=None, help="where gist caches are saved (gist methods)")
    p.add_argument("--label", default=None, help="method name written into the predictions (an ablation's name)")
    p.add_argument("--scramble-context", action="store_true",
                   help="gist methods: compress each document with its tokens shuffled (the leakage control)")
    p.add_argument("--other-document", action="store_true",
                   help="gist methods: answer each document's questions from another test document's gist (the different-document control)")
    p.add_argument("--out", required=True)
    p.add_argument("--environment-out", required=True, help="where this evaluation ran (host, GPU, versions), for the report")
    run(main, p)
