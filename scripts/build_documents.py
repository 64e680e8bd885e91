#!/usr/bin/env python
"""Merge extracted sources, dedupe, cut to [min, max] model tokens and assign train/val/test."""

import logging

from tqdm import tqdm

from gistpoc.cli import json_arg, parser, run
from gistpoc.data.documents import assign_splits, corpus_stats, dedupe, window_document
from gistpoc.model import load_tokenizer
from gistpoc.utils import IssueLog, read_jsonl, write_json, write_jsonl

log = logging.getLogger("gistpoc")


def main(args):
    issues = IssueLog()
    extracted = [doc for path in args.inputs for doc in read_jsonl(path)]
    docs = dedupe(extracted, issues)
    tok = load_tokenizer(args.model_ref)
    windows = []
    for doc in tqdm(docs, desc="tokenise", mininterval=5):
        windows.extend(window_document(doc, tok, args.min_tokens, args.max_tokens, args.windows_per_doc, issues))
    selected = assign_splits(windows, args.split, args.seed, issues)
    write_jsonl(args.out, selected)
    stats = corpus_stats(extracted, selected, issues)
    stats["issues"] = issues.items
    write_json(args.stats, stats)
    log.info("selected %s documents from %d extracted", stats["by_split"], len(extracted))


if __name__ == "__main__":
    p = parser(__doc__)
    p.add_argument("--inputs", nargs="+", required=True)
    p.add_argument("--model-ref", required=True)
    p.add_argument("--min-tokens", type=int, required=True)
    p.add_argument("--max-tokens", type=int, required=True)
    p.add_argument("--windows-per-doc", type=int, default=1)
    p.add_argument("--split", type=json_arg, required=True, help='e.g. {"train": 24, "val": 4, "test": 8}')
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--stats", required=True)
    run(main, p)
