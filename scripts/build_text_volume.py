#!/usr/bin/env python
"""Stage 1's text at volume: the extracted Debian documentation pages less every page that shares a 13-word passage
with a validation or test document, with their model-token counts per package (results/data/volume/stats.json)."""

import logging

from gistpoc.cli import parser, run
from gistpoc.data.volume import train_only, volume_stats
from gistpoc.model import load_tokenizer
from gistpoc.utils import read_jsonl, write_json, write_jsonl

log = logging.getLogger("gistpoc")


def main(args):
    pages = read_jsonl(args.extracted)
    kept, dropped = train_only(pages, read_jsonl(args.documents), args.ngram)
    tok = load_tokenizer(args.model_ref)
    tokens = []
    for i in range(0, len(kept), 256):
        tokens += [len(ids) for ids in tok([p["text"] for p in kept[i : i + 256]], add_special_tokens=False)["input_ids"]]
    write_jsonl(args.out, [{"doc_id": p["doc_id"], "collection": p["collection"], "text": p["text"]} for p in kept])
    stats = volume_stats(kept, dropped, tokens, args.ngram)
    write_json(args.stats, stats)
    log.info("text at volume: %d pages, %.1fM tokens from %d packages (%d pages dropped: they share a %d-word passage with a "
             "validation or test document)", stats["pages"], stats["tokens"] / 1e6, len(stats["packages"]), len(dropped), args.ngram)


if __name__ == "__main__":
    p = parser(__doc__)
    p.add_argument("--extracted", required=True, help="results/data/extracted/debian_docs.jsonl")
    p.add_argument("--documents", required=True, help="results/data/documents.jsonl (its validation and test documents)")
    p.add_argument("--model-ref", required=True)
    p.add_argument("--ngram", type=int, default=13)
    p.add_argument("--out", required=True)
    p.add_argument("--stats", required=True)
    run(main, p)
