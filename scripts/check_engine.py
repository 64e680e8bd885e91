#!/usr/bin/env python
"""The engine check (eval.engine_check): the eager engine's answers against the run's own for the same passkey and
factual questions; identical answers, where the others part, passkey accuracy and factual F1 under each."""

import json
import logging
from pathlib import Path

from gistpoc.cli import parser, run
from gistpoc.evaluate.engine_check import compare, read
from gistpoc.utils import write_json

log = logging.getLogger("gistpoc")


def main(args):
    if len(args.methods) != len(args.eager) or len(args.methods) != len(args.answers):
        raise ValueError(f"--methods ({len(args.methods)}), --eager ({len(args.eager)}) and --answers ({len(args.answers)}) must pair up")
    out = {m: compare(read(Path(e)), read(Path(a)), ("eager", "run")) for m, e, a in zip(args.methods, args.eager, args.answers)}
    write_json(args.out, out)
    log.info("engine check: %s", json.dumps({m: f"{r['identical']} of {r['questions']} identical" for m, r in out.items()}))


if __name__ == "__main__":
    p = parser(__doc__)
    p.add_argument("--methods", nargs="+", required=True)
    p.add_argument("--eager", nargs="+", required=True, help="results/engine_check/<method>.eager.jsonl, in --methods order")
    p.add_argument("--answers", nargs="+", required=True, help="results/eval/<method>/answers.jsonl, in --methods order")
    p.add_argument("--out", required=True)
    run(main, p)
