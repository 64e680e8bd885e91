#!/usr/bin/env python
"""Prepare the base model: convert the packaged SmolLM2 GGUF once, or record the hub id/path."""

from gistpoc.cli import json_arg, parser, run
from gistpoc.codehash import write_manifest
from gistpoc.model import write_model_ref


def main(args):
    print(write_model_ref(args.out_dir, args.model))
    if args.manifest:  # <dir>.sha256 beside the folder: what the rules reading it take as input
        write_manifest(args.out_dir, args.manifest)


if __name__ == "__main__":
    p = parser(__doc__)
    p.add_argument("--model", type=json_arg, required=True, help="the model: section of the config, as JSON")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--manifest", default="", help="write the sha256 of every file in --out-dir here (the rule's <dir>.sha256)")
    run(main, p)
