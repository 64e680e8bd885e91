#!/usr/bin/env python
"""Stage 1: pre-train one gist-N adapter, task-agnostic, on the training split only (passkey windows with the
length curriculum, optional cue-continuation; with --volume the windows also come from stage 1's text at volume); the curriculum gate reads held-out training documents. Writes the
adapter with provenance.json (what train_gist's gist.pretrained validates); resumable."""

import json
from pathlib import Path

from gistpoc.cli import run
from gistpoc.model import load_model
from gistpoc.train import pretrained
from gistpoc.train.loop import train_gist
from gistpoc.train.script import finish, stage_parser
from gistpoc.utils import git_commit, read_jsonl, records_hash, seed_everything, write_json


def main(args):
    seed_everything(args.seed)
    records = read_jsonl(args.train)
    train, heldout = pretrained.heldout_split(records)
    loaded = load_model(args.model, args.model_ref, n_gist=args.n_gist, trainable=True)
    fingerprint_model = pretrained.base_fingerprint(loaded.model, min(loaded.gist_ids))  # before LoRA wraps it
    out = Path(args.out_dir)
    warm = Path(args.warm_start) if args.warm_start else None
    volume = {r["doc_id"]: r["text"] for r in read_jsonl(args.volume)} if args.volume else None
    train_gist(loaded, train, heldout, args.train_cfg, args.instruction, args.seed, out, Path(args.state_dir),
               args.passkey_digits, args.model, init_adapter=warm, warm_start=warm is not None,
               chunk_sizes=tuple(args.chunk_tokens), volume=volume)
    summary = json.loads((out / "summary.json").read_text())
    prov = pretrained.provenance(loaded, args.train_cfg, summary, records_hash(records), git_commit(), fingerprint_model, args.seed)
    if summary["volume"]:  # what stage 1 read besides the training documents (packages and tokens: results/data/volume/stats.json)
        prov["volume"] = {**summary["volume"], "file": args.volume}
    write_json(out / pretrained.PROVENANCE, prov)
    finish(args)


if __name__ == "__main__":
    p = stage_parser(__doc__)
    p.add_argument("--warm-start", default="", help="a stage-1 adapter folder to start from (gist.warm_start): another N's, or this N's made elsewhere (continued)")
    p.add_argument("--volume", default="", help="stage 1's text at volume (results/data/volume/train.jsonl): more text for the "
                   "passkey, continuation and reconstruction windows, never documents with questions")
    run(main, p)
