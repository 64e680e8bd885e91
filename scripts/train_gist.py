#!/usr/bin/env python
"""Train one gist-N checkpoint (LoRA or full fine-tuning + gist embeddings): passkey-window stream mixed with
the gist-N training documents, length curriculum with a promotion gate, a step budget; resumable."""

from pathlib import Path

from gistpoc.cli import json_arg, parser, run
from gistpoc.codehash import write_manifest
from gistpoc.model import load_model
from gistpoc.train.loop import train_gist
from gistpoc.utils import read_jsonl, seed_everything


def main(args):
    seed_everything(args.seed)
    loaded = load_model(args.model, args.model_ref, n_gist=args.n_gist, trainable=True)
    train_gist(
        loaded,
        read_jsonl(args.train),
        read_jsonl(args.val),
        args.train_cfg,
        args.instruction,
        args.seed,
        Path(args.out_dir),
        Path(args.state_dir),
        args.passkey_digits,
        args.model,
        init_adapter=Path(args.pretrained) if args.pretrained else None,
    )
    if args.manifest:  # <dir>.sha256 beside the folder: what the rules reading it take as input
        write_manifest(args.out_dir, args.manifest)


if __name__ == "__main__":
    p = parser(__doc__)
    p.add_argument("--model", type=json_arg, required=True, help="the model: section of the config, as JSON")
    p.add_argument("--model-ref", required=True)
    p.add_argument("--train-cfg", type=json_arg, required=True, help="the train: section of the config, as JSON")
    p.add_argument("--train", required=True)
    p.add_argument("--val", required=True)
    p.add_argument("--n-gist", type=int, required=True)
    p.add_argument("--instruction", required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out-dir", required=True)
    p.add_argument("--manifest", default="", help="write the sha256 of every file in --out-dir here (the rule's <dir>.sha256)")
    p.add_argument("--state-dir", required=True, help="resumable state, kept outside the rule's outputs")
    p.add_argument("--passkey-digits", type=int, required=True, help="data.passkey_digits: length of the stream's keys")
    p.add_argument("--pretrained", default="", help="a pre-trained (stage-1) adapter folder to start from (gist.pretrained)")
    run(main, p)
