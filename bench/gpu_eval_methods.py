#!/usr/bin/env python
"""Run the evaluation runner (the code behind scripts/evaluate_method.py) on a GPU with the default's
SmolLM2 and a gist-25 checkpoint: closed book, full context and gist-25 from saved caches, peak memory from
torch.cuda.max_memory_allocated. Then a real CUDA out-of-memory: full context again under a memory cap
just above the weights, where long prompts must fail and be recorded as `oom` while the run goes on.

Usage: python bench/gpu_eval_methods.py --model-ref DIR --checkpoint DIR --dataset test.gist25.jsonl --out DIR
"""

import argparse
import json
import statistics
from pathlib import Path

import torch

from gistpoc.evaluate.runner import run_method
from gistpoc.model import load_model
from gistpoc.utils import read_jsonl, write_jsonl

INSTR_GIST = "Compress the following text into gist tokens, then answer the question."
INSTR_BASE = "Read the following text, then answer the question."


def summary(rows):
    ok = [r for r in rows if r["status"] == "ok"]
    return {"n": len(rows), "oom": len(rows) - len(ok),
            "ttft_ms_median": statistics.median(r["ttft_ms"] for r in ok) if ok else None,
            "peak_mem_mib_max": max(r["peak_mem_bytes"] for r in ok) / 2**20 if ok else None,
            "mem_kind": ok[0]["mem_kind"] if ok else None,
            "kv_bytes_median": statistics.median(r["kv_bytes"] for r in ok) if ok else None,
            "passkey_correct": sum(r["scores"]["passkey_correct"] or 0 for r in ok if r["qtype"] == "passkey")}


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model-ref", required=True)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    out = Path(args.out)
    records = read_jsonl(args.dataset)
    cfg = {"device": "cuda", "dtype": "bfloat16", "attn_implementation": "sdpa"}
    result = {"device": torch.cuda.get_device_name(0)}
    base = load_model(cfg, args.model_ref)
    for method in ("closed_book", "full_context"):
        rows = run_method(method, base, records, INSTR_BASE, 16, warmup_items=1)
        write_jsonl(out / f"{method}.jsonl", rows)
        result[method] = summary(rows)
    gist = load_model(cfg, args.model_ref, n_gist=25, adapter_dir=args.checkpoint)
    rows = run_method("gist25", gist, records, INSTR_GIST, 16, warmup_items=1, cache_dir=out / "caches")
    write_jsonl(out / "gist25.jsonl", rows)
    result["gist25"] = summary(rows)
    # a real CUDA OOM: cap the process just above what the weights and a short prompt need
    torch.cuda.empty_cache()
    weights = torch.cuda.memory_allocated()
    del gist
    torch.cuda.empty_cache()
    weights = torch.cuda.memory_allocated()
    cap = weights + 26 * 2**20
    torch.cuda.set_per_process_memory_fraction(cap / torch.cuda.get_device_properties(0).total_memory)
    rows = run_method("full_context", base, records, INSTR_BASE, 16, warmup_items=0)
    result["full_context_capped"] = {**summary(rows), "cap_mib": cap / 2**20, "statuses": [r["status"] for r in rows]}
    print(json.dumps(result, indent=1))
    (out / "summary.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
