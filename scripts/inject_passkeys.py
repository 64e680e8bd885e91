#!/usr/bin/env python
"""Plant a seeded 5-digit passkey in every document at a recorded depth, on a sentence boundary."""

from gistpoc.cli import parser, run
from gistpoc.data.dataset import inject_all
from gistpoc.utils import read_jsonl, write_jsonl


def main(args):
    write_jsonl(args.out, inject_all(read_jsonl(args.documents), args.seed, args.digits))


if __name__ == "__main__":
    p = parser(__doc__)
    p.add_argument("--documents", required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--digits", type=int, default=5)
    p.add_argument("--out", required=True)
    run(main, p)
