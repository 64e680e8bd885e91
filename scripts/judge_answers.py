#!/usr/bin/env python
"""LLM-as-judge (OpenAI-compatible endpoint) for global-theme and reasoning answers; blinded and cached."""

from pathlib import Path

from gistpoc.cli import json_arg, parser, run
from gistpoc.evaluate.judge import judge_items
from gistpoc.evaluate.summary import item_key
from gistpoc.qa.openai_backend import CachedChatClient
from gistpoc.utils import read_jsonl, write_jsonl


def main(args):
    items = []
    for path in args.predictions:
        for r in read_jsonl(path):
            if r["qtype"] in ("global", "reasoning") and r["status"] == "ok":
                items.append({"key": item_key(r), "question": r["question"], "reference": r["reference"], "prediction": r["prediction"]})
    client = CachedChatClient(args.endpoint, Path(args.cache_dir))
    write_jsonl(args.out, judge_items(items, client, args.judge_model, args.seed))


if __name__ == "__main__":
    p = parser(__doc__)
    p.add_argument("--predictions", nargs="+", required=True)
    p.add_argument("--endpoint", type=json_arg, required=True, help="the qa.openai section, as JSON")
    p.add_argument("--judge-model", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", default="results/.cache/judge")
    p.add_argument("--out", required=True)
    run(main, p)
