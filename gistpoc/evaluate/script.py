"""What the two answering scripts (scripts/evaluate_method.py, scripts/evaluate_budget.py) share beyond gistpoc.cli:
their options (the model, the test records, the baseline instruction, decoding, the answering engine, question types,
seed). Here, not in gistpoc.cli, which every script imports: an option there would change every rule's code hash."""

from __future__ import annotations

import argparse

from gistpoc.cli import json_arg, parser


def answer_parser(description: str) -> argparse.ArgumentParser:
    p = parser(description)
    p.add_argument("--model", type=json_arg, required=True, help="the model: section of the config, as JSON")
    p.add_argument("--model-ref", required=True)
    p.add_argument("--dataset", required=True, help="the test records (every method answers the same questions)")
    p.add_argument("--baseline-instruction", required=True)
    p.add_argument("--max-new-tokens", type=int, required=True)
    p.add_argument("--warmup-items", type=int, default=1)
    p.add_argument("--engine", choices=["eager", "compiled"], default="eager",
                   help="eager: the Hugging Face loop; compiled: gistpoc.engine (static cache, CUDA graphs on a GPU)")
    p.add_argument("--engine-batch", type=int, default=16, help="compiled engine: questions per pass on one cache")
    p.add_argument("--qtypes", nargs="+", default=None, help="answer only these question types (e.g. passkey)")
    p.add_argument("--seed", type=int, default=0)
    return p
