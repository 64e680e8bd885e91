#!/usr/bin/env python
"""Aggregate every method's predictions into results/eval/summary.csv (+ passkey breakdown, rating sheet)."""

import logging

from gistpoc.cli import parser, run
from gistpoc.evaluate.summary import passkey_breakdown, rating_sheet, read_ratings, summarize_method, write_csv
from gistpoc.utils import read_jsonl

log = logging.getLogger("gistpoc")


def main(args):
    judgments = {j["key"]: j for j in read_jsonl(args.judgments)} if args.judgments else None
    ratings = read_ratings(args.ratings) if args.ratings else {}
    all_rows, summary = [], []
    for path in args.predictions:
        rows = read_jsonl(path)
        all_rows += rows
        summary.append(summarize_method(rows, args.global_threshold, args.bootstrap, args.seed, judgments, ratings))
    write_csv(args.summary, summary)
    write_csv(args.passkey, passkey_breakdown(all_rows))
    write_csv(args.rating_sheet, rating_sheet(all_rows, args.seed))
    log.info("summary of %d methods -> %s (%d human ratings read)", len(summary), args.summary, len(ratings))


if __name__ == "__main__":
    p = parser(__doc__)
    p.add_argument("--predictions", nargs="+", required=True)
    p.add_argument("--judgments", default=None)
    p.add_argument("--ratings", default=None, help="filled rating sheet (absent file = no ratings yet)")
    p.add_argument("--global-threshold", type=float, required=True)
    p.add_argument("--bootstrap", type=int, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--summary", required=True)
    p.add_argument("--passkey", required=True)
    p.add_argument("--rating-sheet", required=True)
    run(main, p)
