#!/usr/bin/env python
"""Write results/dataset/{split}.gist{N}.jsonl: one record per question with exact gist token indices."""

import logging
from collections import defaultdict

from gistpoc.cli import parser, required, run
from gistpoc.data.dataset import build_records
from gistpoc.model import add_gist_tokens, load_tokenizer
from gistpoc.utils import read_jsonl, write_jsonl

log = logging.getLogger("gistpoc")


def main(args):
    docs = read_jsonl(args.documents)
    qa_by_doc = defaultdict(list)
    for qa in read_jsonl(args.qa):
        qa_by_doc[qa["doc_id"]].append(qa)
    passkeys = {p["doc_id"]: p for p in read_jsonl(args.passkeys)}
    tok = load_tokenizer(args.model_ref)
    add_gist_tokens(tok, args.n_gist)
    for split, out in (("train", args.train), ("val", args.val), ("test", args.test)):
        split_docs = [d for d in docs if d["split"] == split]
        n = write_jsonl(out, build_records(split_docs, qa_by_doc, passkeys, tok, args.instruction, args.n_gist))
        log.info("%s: %d records from %d documents", out, n, len(split_docs))


if __name__ == "__main__":
    p = parser(__doc__)
    required(p, "--documents", "--qa", "--passkeys", "--model-ref", "--instruction", "--train", "--val", "--test")
    p.add_argument("--n-gist", type=int, required=True)
    run(main, p)
