"""What the two training scripts (scripts/pretrain_gist.py, scripts/train_gist.py) share beyond gistpoc.cli: their
options (``gistpoc.cli.training_args`` plus the chunk-wise layout) and the manifest beside the checkpoint. Here, not
in gistpoc.cli, which every script imports: an option there would change every rule's code hash."""

from __future__ import annotations

import argparse

from gistpoc.cli import parser, training_args
from gistpoc.codehash import write_manifest


def stage_parser(description: str) -> argparse.ArgumentParser:
    p = training_args(parser(description))
    p.add_argument("--chunk-tokens", type=int, nargs="*", default=[],
                   help="the chunk-wise layout (gist.chunked): N gists per chunk, each row's chunk size drawn from these")
    return p


def finish(args: argparse.Namespace) -> None:
    """<dir>.sha256 beside the checkpoint folder: what the rules reading it take as input (with --manifest)."""
    if args.manifest:
        write_manifest(args.out_dir, args.manifest)
