#!/usr/bin/env python
"""Answer the test questions with the matched-budget baselines (truncate_head/tail, kv_select, mean_pool, ppl_select
at N cached positions, gistpoc.baselines.budget): the base model, one pass per document shared by all of them;
one answers.jsonl per method (unscored: score_answers scores them)."""

import logging
from pathlib import Path

from gistpoc.cli import eval_items, run
from gistpoc.evaluate.runner import run_budget
from gistpoc.evaluate.script import answer_parser
from gistpoc.model import load_model
from gistpoc.utils import host_environment, write_json, write_jsonl

log = logging.getLogger("gistpoc")


def main(args):
    records = eval_items(args)
    if len(args.methods) != len(args.out_dirs):
        raise SystemExit(f"--methods ({len(args.methods)}) and --out-dirs ({len(args.out_dirs)}) must pair up")
    loaded = load_model(args.model, args.model_ref)
    rows = run_budget(loaded, records, args.baseline_instruction, args.methods, args.max_new_tokens, args.warmup_items,
                      engine=args.engine, engine_batch=args.engine_batch, window=args.window, pool=args.pool)
    env = host_environment()
    for method, folder in zip(args.methods, args.out_dirs):
        Path(folder).mkdir(parents=True, exist_ok=True)
        write_jsonl(Path(folder) / "answers.jsonl", rows[method])
        write_json(Path(folder) / "environment.json", {"method": method, **env})
        log.info("%s: %d answers (%d oom)", method, len(rows[method]), sum(r["status"] != "ok" for r in rows[method]))


if __name__ == "__main__":
    p = answer_parser(__doc__)
    p.add_argument("--methods", nargs="+", required=True, help="e.g. truncate_head25 kv_select25")
    p.add_argument("--out-dirs", nargs="+", required=True, help="one folder per method, same order")
    p.add_argument("--window", type=int, default=16, help="kv_select: observation window (last context tokens)")
    p.add_argument("--pool", type=int, default=5, help="kv_select: average-pooling width over positions")
    run(main, p)
