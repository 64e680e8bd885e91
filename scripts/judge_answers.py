#!/usr/bin/env python
"""LLM-as-judge (OpenAI-compatible endpoint) for global-theme (coherent & complete, yes/no) and reasoning (3-point)
answers: blinded, shuffled, cached; and the judge's calibration on the hand-labelled fixture (agreement with the labels,
position consistency, padding flips, the proxy's agreement)."""

from pathlib import Path

from gistpoc.baselines.rag import SentenceEmbedder
from gistpoc.cli import json_arg, parser, run
from gistpoc.evaluate.judge import calibrate, judge_items
from gistpoc.evaluate.summary import item_key
from gistpoc.qa.openai_backend import CachedChatClient
from gistpoc.utils import read_jsonl, write_json, write_jsonl


def main(args):
    items = []
    for path in args.predictions:
        for r in read_jsonl(path):
            if r["qtype"] in args.qtypes and r["status"] == "ok":
                items.append({"key": item_key(r), "qtype": r["qtype"], "question": r["question"], "reference": r["reference"],
                              "prediction": r["prediction"]})
    # the judge's replies are short (a verdict or rating and a one-line reason): a batching server answers a batch as
    # long as its longest reply, so the judge's own cap, not the writer's
    client = CachedChatClient({**args.endpoint, "max_tokens": args.judge_max_tokens}, Path(args.cache_dir))
    write_jsonl(args.out, judge_items(items, client, args.judge_model, args.seed, args.reasoning_protocol))
    if args.calibration_fixture:
        embedder = SentenceEmbedder(args.metric_embedder) if args.metric_embedder else None
        report = calibrate(read_jsonl(args.calibration_fixture), client, args.judge_model, embedder, args.global_threshold,
                           args.reasoning_protocol)
        write_json(args.calibration_out, {"judge_model": args.judge_model, "fixture": args.calibration_fixture, **report})


if __name__ == "__main__":
    p = parser(__doc__)
    p.add_argument("--predictions", nargs="+", required=True)
    p.add_argument("--endpoint", type=json_arg, required=True, help="the qa.openai section, as JSON")
    p.add_argument("--judge-model", required=True)
    p.add_argument("--judge-max-tokens", type=int, default=96, help="eval.judge.max_tokens")
    p.add_argument("--qtypes", nargs="+", choices=["global", "reasoning"], default=["global", "reasoning"],
                   help="eval.judge.qtypes: the question types judged")
    p.add_argument("--reasoning-protocol", choices=["rating", "two_checks"], default="rating",
                   help="eval.judge.reasoning_protocol: one 3-point request, or two yes/no checks (correct, complete)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", default="results/.cache/judge")
    p.add_argument("--out", required=True)
    p.add_argument("--calibration-fixture", default=None, help="hand-labelled answers (resources/judge/calibration.jsonl)")
    p.add_argument("--calibration-out", default=None)
    p.add_argument("--metric-embedder", default=None, help="eval.metric_embedder: the proxy, for its agreement with the labels")
    p.add_argument("--global-threshold", type=float, default=0.5)
    run(main, p)
