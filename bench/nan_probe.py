#!/usr/bin/env python
"""Replay chosen optimizer steps of a stage-1 run from its resumable state and say where a gradient goes non-finite.

The content run's chunked stage 1 (config.qwen-content.yaml, gist16chunked) stopped at step 82 with a NaN gist
embedding while every micro-batch loss of that step was finite: the gradient, not the loss, went non-finite. This
loads the state the run kept (results/state/pretrain/<run>/trainer.pt, written every checkpoint_every_steps), rebuilds
the same Trainer (same data stream, same micro-batches: they depend on seed, step and micro-batch only), and for each
micro-batch of the steps asked for prints its rows (document or passkey window, chunk size, tokens), its loss parts,
and the parameters whose gradients are non-finite, with the largest finite gradient entry. The weights stay those of
the saved state (nothing is stepped), so the probe asks: does this batch give a non-finite gradient by itself?

    python bench/nan_probe.py --model-ref results/model/base --train results/dataset/train.gist16.jsonl \
        --state results/state/pretrain/gist16chunked --config config.qwen-content.yaml --train-cfg train_cfg.json --n-gist 16 \
        --chunk-tokens 256 512 1024 --steps 81 --device cpu --dtype float32 --out bench/results/nan_probe.json
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from gistpoc.config import load_config
from gistpoc.model import load_model
from gistpoc.train import pretrained
from gistpoc.train.loop import Trainer
from gistpoc.utils import read_jsonl, seed_everything


def grad_report(model) -> dict:
    """Non-finite gradients by parameter, and the total norm of the finite ones."""
    bad, total, biggest = [], 0.0, (0.0, "")
    for name, p in model.named_parameters():
        if p.grad is None:
            continue
        g = p.grad.detach().float()
        finite = torch.isfinite(g)
        if not finite.all():
            bad.append({"param": name, "nonfinite": int((~finite).sum()), "nan": int(torch.isnan(g).sum()), "numel": g.numel()})
        gf = torch.where(finite, g, torch.zeros_like(g))
        total += float(gf.pow(2).sum())
        m = float(gf.abs().max()) if gf.numel() else 0.0
        if m > biggest[0]:
            biggest = (m, name)
    return {"nonfinite_params": bad, "finite_grad_norm": math.sqrt(total), "max_abs_grad": biggest[0], "max_abs_grad_param": biggest[1]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-ref", required=True)
    ap.add_argument("--train", required=True, help="results/dataset/train.gist<N>.jsonl (stage 1 splits off its held-out part)")
    ap.add_argument("--state", required=True, help="results/state/pretrain/<run> (progress.json, trainer.pt)")
    ap.add_argument("--config", required=True, help="the run's config (model, gist.instruction, seed, data.passkey_digits)")
    ap.add_argument("--train-cfg", required=True, help="the --train-cfg JSON the run's pretrain_gist command got (in run.log), in a file")
    ap.add_argument("--n-gist", type=int, required=True)
    ap.add_argument("--chunk-tokens", type=int, nargs="*", default=[])
    ap.add_argument("--steps", type=int, nargs="+", required=True, help="0-based optimizer steps (the log's step k is k-1)")
    ap.add_argument("--micro", type=int, nargs="*", default=[], help="only these micro-batches (default: all)")
    ap.add_argument("--device", default="")
    ap.add_argument("--dtype", default="")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    cfg = load_config(args.config)
    model_cfg = dict(cfg["model"])
    if args.device:
        model_cfg["device"] = args.device
    if args.dtype:
        model_cfg["dtype"] = args.dtype
    train_cfg = json.loads(Path(args.train_cfg).read_text())
    seed_everything(cfg["seed"])
    train, heldout = pretrained.heldout_split(read_jsonl(args.train))
    loaded = load_model(model_cfg, args.model_ref, n_gist=args.n_gist, trainable=True)
    t = Trainer(loaded, train, heldout, train_cfg, cfg["gist"]["instruction"], cfg["seed"], cfg["data"]["passkey_digits"], model_cfg,
                chunk_sizes=tuple(args.chunk_tokens))
    state = Path(args.state)
    progress = json.loads((state / "progress.json").read_text())
    trainer = torch.load(state / "trainer.pt", weights_only=False, map_location="cpu")
    t.model.load_state_dict(trainer["weights"], strict=False)
    dtype = next(p.dtype for p in t.model.parameters() if p.is_floating_point())
    out = {"state_step": progress["step"], "fingerprint_matches": progress["fingerprint"] == t.fingerprint, "device": str(
        next(t.model.parameters()).device), "dtype": str(dtype), "steps": []}
    print(f"state at step {progress['step']} (fingerprint {'matches' if out['fingerprint_matches'] else 'differs: code or volume changed'})")
    k = train_cfg["grad_accum"]
    for step in args.steps:
        for m in (args.micro or range(k)):
            rows, is_pk = t.batch_rows(step, m)
            t0 = time.perf_counter()
            t.model.zero_grad(set_to_none=True)
            loss, parts, tokens, _ = t.micro_loss(step, m)
            (loss / k).backward()
            rep = grad_report(t.model)
            rec = {"step": step, "micro": m, "kind": "passkey" if is_pk else "documents", "tokens": tokens,
                   "rows": [{"doc_id": r.get("doc_id", ""), "chunks": len(r.get("chunks", [])),
                             "context_tokens": r.get("gist_start", 0)} for r in rows],
                   "loss": float(loss), **{k2: v for k2, v in parts.items()}, **rep, "seconds": round(time.perf_counter() - t0, 1)}
            out["steps"].append(rec)
            print(json.dumps({k2: v for k2, v in rec.items() if k2 != "nonfinite_params"}),
                  f"nonfinite params: {len(rep['nonfinite_params'])}", [b["param"] for b in rep["nonfinite_params"][:4]], flush=True)
    Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
