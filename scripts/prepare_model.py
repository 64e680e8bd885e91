#!/usr/bin/env python
"""Prepare the base model: convert the packaged SmolLM2 GGUF once, or record the hub id/path."""

from gistpoc.cli import json_arg, parser, run
from gistpoc.model import write_model_ref


def main(args):
    print(write_model_ref(args.out_dir, args.model))


if __name__ == "__main__":
    p = parser(__doc__)
    p.add_argument("--model", type=json_arg, required=True, help="the model: section of the config, as JSON")
    p.add_argument("--out-dir", required=True)
    run(main, p)
