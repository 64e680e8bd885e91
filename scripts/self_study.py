#!/usr/bin/env python
"""Self-study: the base model reads each training document in full and answers train.self_study.prompts; its answers
become stage 2's extra question-answer segments (gistpoc.train.self_study)."""

import logging

from gistpoc.cli import json_arg, parser, required, run
from gistpoc.model import load_model
from gistpoc.train.self_study import self_study_records
from gistpoc.utils import read_jsonl, seed_everything, write_jsonl

log = logging.getLogger("gistpoc")


def main(args):
    seed_everything(args.seed)
    records = [r for r in read_jsonl(args.train) if r["split"] == "train"]
    loaded = load_model(args.model, args.model_ref)
    out = self_study_records(loaded, records, args.prompts, args.instruction, args.max_new_tokens, args.engine, args.engine_batch)
    write_jsonl(args.out, out)
    log.info("self-study: %d answers for %d documents", len(out), len({r["doc_id"] for r in out}))


if __name__ == "__main__":
    p = parser(__doc__)
    required(p, "--train", "--model-ref", "--instruction", "--out")
    p.add_argument("--model", type=json_arg, required=True, help="the model: section of the config, as JSON")
    p.add_argument("--prompts", type=json_arg, required=True, help="train.self_study.prompts, as JSON")
    p.add_argument("--max-new-tokens", type=int, required=True)
    p.add_argument("--engine", choices=["eager", "compiled"], default="eager")
    p.add_argument("--engine-batch", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    run(main, p)
