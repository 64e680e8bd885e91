#!/usr/bin/env python
"""Train one gist-N checkpoint (LoRA or full fine-tuning + gist embeddings): passkey-window stream mixed with
the gist-N training documents, length curriculum with a promotion gate, a step budget; resumable."""

from pathlib import Path

from gistpoc.cli import run
from gistpoc.model import load_model
from gistpoc.train.loop import train_gist
from gistpoc.train.script import finish, stage_parser
from gistpoc.utils import read_jsonl, seed_everything


def main(args):
    seed_everything(args.seed)
    loaded = load_model(args.model, args.model_ref, n_gist=args.n_gist, trainable=True)
    train_gist(
        loaded,
        read_jsonl(args.train) + [r for path in args.extra_train for r in read_jsonl(path)],
        read_jsonl(args.val),
        args.train_cfg,
        args.instruction,
        args.seed,
        Path(args.out_dir),
        Path(args.state_dir),
        args.passkey_digits,
        args.model,
        init_adapter=Path(args.pretrained) if args.pretrained else None,
        chunk_sizes=tuple(args.chunk_tokens),
    )
    finish(args)


if __name__ == "__main__":
    p = stage_parser(__doc__)
    p.add_argument("--val", required=True)
    p.add_argument("--extra-train", nargs="*", default=[], help="more training records of the same documents (self-study answers)")
    p.add_argument("--pretrained", default="", help="a pre-trained (stage-1) adapter folder to start from (gist.pretrained)")
    run(main, p)
