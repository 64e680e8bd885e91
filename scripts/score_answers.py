#!/usr/bin/env python
"""Score one method's saved answers (EM / F1, passkey, ROUGE-L, the embedding proxy with eval.metric_embedder)."""

import logging

from gistpoc.baselines.rag import SentenceEmbedder
from gistpoc.cli import parser, run
from gistpoc.evaluate.scoring import score_rows
from gistpoc.utils import read_jsonl, write_jsonl

log = logging.getLogger("gistpoc")


def main(args):
    rows = read_jsonl(args.answers)
    needs_embedder = any(r["qtype"] in ("global", "reasoning") and r.get("prediction") is not None for r in rows)
    scored = score_rows(rows, SentenceEmbedder(args.metric_embedder) if needs_embedder else None, args.passkey_digits)
    write_jsonl(args.out, scored)
    log.info("%s: %d answers scored", args.answers, len(scored))


if __name__ == "__main__":
    p = parser(__doc__)
    p.add_argument("--answers", required=True, help="answers.jsonl of one evaluation (unscored)")
    p.add_argument("--metric-embedder", required=True, help="eval.metric_embedder: the proxy's sentence embedding model")
    p.add_argument("--passkey-digits", type=int, default=5, help="data.passkey_digits: the length of a key-like number")
    p.add_argument("--out", required=True)
    run(main, p)
