#!/usr/bin/env python
"""How much of the text do trained gists hold, at each compression ratio? A probe of a run's adapters on its own test
documents (issue 27: why the quality-versus-ratio curve is flat).

For each of the first ``--docs`` test documents, the first ``--prefix`` context tokens are compressed by each method
and two things are scored teacher-forced after the gist span, exactly where a question would continue:
  continuation    the ``--next`` tokens that follow the prefix in the document, after a one-token cue (stage 1's
                  continuation objective)
  reconstruction  ``--spans`` spans of ``--span`` tokens from inside the prefix, each after its ``--cue``-token cue
                  (stage 1's reconstruction objective)
Methods: ``none`` (the base model, head + cue only), ``full`` (the base model reading the prefix), and every gist method
named (``gist16per256``: the chunk-wise checkpoint at 256-token chunks; ``gist25``: the whole-prefix checkpoint).
Prints mean NLL per token, teacher-forced token accuracy and "gap closed" = (none - method) / (none - full) per method,
and writes them as JSON, with each document's NLL and accuracy per method (``per_document``, in ``documents`` order). Usage (repo root, CPU is fine for a few documents):

    python bench/gist_content_probe.py --model-ref results/model/base --dataset <test.gist16.jsonl> \\
        --checkpoint gist16per256=<dir>/gist16chunked --checkpoint gist16per1024=<dir>/gist16chunked \\
        --checkpoint gist25=<dir>/gist25 --out bench/results/<name>.json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gistpoc.gist.cache import GistCache, compress  # noqa: E402
from gistpoc.gist.template import encode_prefix, prompt_template  # noqa: E402
from gistpoc.methods import parse  # noqa: E402
from gistpoc.model import load_model  # noqa: E402
from gistpoc.utils import read_jsonl  # noqa: E402


@torch.no_grad()
def score(model, past, start: int, cue: list[int], target: list[int]) -> tuple[float, float]:
    """Summed NLL and correct-token count of ``target`` after ``cue``, continuing ``past`` at position ``start``."""
    ids = torch.tensor([cue + target], device=model.device)
    pos = torch.arange(start, start + ids.shape[1], device=model.device)[None]
    logits = model(input_ids=ids, position_ids=pos, past_key_values=past, use_cache=True).logits[0].float()
    pred = logits[len(cue) - 1 : -1]
    tgt = torch.tensor(target, device=pred.device)
    nll = torch.nn.functional.cross_entropy(pred, tgt, reduction="sum")
    return float(nll), float((pred.argmax(-1) == tgt).sum())


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model-ref", required=True)
    p.add_argument("--dataset", required=True, help="a run's test records (any gist-N file: the contexts are the same)")
    p.add_argument("--checkpoint", action="append", default=[], help="METHOD=DIR (or METHOD@LABEL=DIR): a gist method and the checkpoint it reads")
    p.add_argument("--instruction", default="Compress the following text into gist tokens, then answer the question.")
    p.add_argument("--baseline-instruction", default="Read the following text, then answer the question.")
    p.add_argument("--docs", type=int, default=6)
    p.add_argument("--prefix", type=int, default=1536)
    p.add_argument("--next", type=int, default=128)
    p.add_argument("--spans", type=int, default=3)
    p.add_argument("--span", type=int, default=64)
    p.add_argument("--cue", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu, or cuda on the GPU machine (fp32 either way)")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    cfg = {"device": args.device, "dtype": "float32", "attn_implementation": "sdpa"}
    records, seen = [], set()
    for r in read_jsonl(args.dataset):
        if r["doc_id"] not in seen:
            seen.add(r["doc_id"])
            records.append(r)
    base = load_model(cfg, args.model_ref)
    tok = base.tokenizer
    docs = []
    rng = random.Random(args.seed)
    for r in records:
        ids = tok(r["context"], add_special_tokens=False)["input_ids"]
        if len(ids) < args.prefix + args.next:
            continue
        spans = [rng.randrange(0, args.prefix - args.cue - args.span) for _ in range(args.spans)]
        docs.append({"doc_id": r["doc_id"], "ids": ids, "spans": spans})
        if len(docs) == args.docs:
            break
    # what each method is scored on, per document: (cue, target) pairs
    tasks = [[(d["ids"][args.prefix : args.prefix + 1], d["ids"][args.prefix + 1 : args.prefix + args.next])]
             + [(d["ids"][s : s + args.cue], d["ids"][s + args.cue : s + args.cue + args.span]) for s in d["spans"]] for d in docs]
    kinds = ["continuation"] + ["reconstruction"] * args.spans
    totals: dict[str, dict[str, list[float]]] = {}
    per_doc: dict[str, list[dict]] = {}   # method -> one row per document (for intervals over documents)

    def add(method: str, doc_tasks, results) -> None:
        t = totals.setdefault(method, {k: [0.0, 0.0, 0] for k in ("continuation", "reconstruction")})
        d = {k: [0.0, 0.0, 0] for k in ("continuation", "reconstruction")}
        for kind, (_cue, target), (nll, hit) in zip(kinds, doc_tasks, results):
            for acc in (t[kind], d[kind]):
                acc[0] += nll
                acc[1] += hit
                acc[2] += len(target)
        per_doc.setdefault(method, []).append({f"{k}_{m}": v[i] / v[2] for k, v in d.items() for i, m in ((0, "nll"), (1, "acc"))})

    def prefix_text(d) -> str:
        return tok.decode(d["ids"][: args.prefix])

    t0 = time.time()
    tpl = prompt_template(tok, args.baseline_instruction)
    for d, doc_tasks in zip(docs, tasks):
        for method, ctx in (("none", ""), ("full", prefix_text(d))):
            enc = encode_prefix(tok, tpl, ctx, [])
            with torch.no_grad():
                out = base.model(input_ids=torch.tensor([enc.prefix_ids], device=base.model.device), use_cache=True)
            layers = out.past_key_values.layers
            kept = GistCache([la.keys for la in layers], [la.values for la in layers], len(enc.prefix_ids), enc.context_tokens)
            res = [score(base.model, kept.to_dynamic_cache(), kept.next_position, cue, target) for cue, target in doc_tasks]
            add(method, doc_tasks, res)
        print(f"{d['doc_id']}: base done ({time.time() - t0:.0f} s)", flush=True)
    del base
    for spec in args.checkpoint:
        method, ck = spec.split("=", 1)
        m = parse(method.split("@", 1)[0])  # METHOD@LABEL: two checkpoints of one method side by side (stage 1, stage 2)
        loaded = load_model(cfg, args.model_ref, n_gist=m.n, adapter_dir=ck)
        tpl = prompt_template(loaded.tokenizer, args.instruction)
        for d, doc_tasks in zip(docs, tasks):
            enc = encode_prefix(loaded.tokenizer, tpl, prefix_text(d), loaded.gist_ids, m.chunk)
            cache = compress(loaded.model, enc)
            res = [score(loaded.model, cache.to_dynamic_cache(), cache.next_position, cue, target) for cue, target in doc_tasks]
            add(method, doc_tasks, res)
            totals[method]["positions"] = totals[method].get("positions", 0) + cache.n_tokens
            totals[method]["context_tokens"] = totals[method].get("context_tokens", 0) + enc.context_tokens
        print(f"{method}: done ({time.time() - t0:.0f} s)", flush=True)
    rows = []
    for method, t in totals.items():
        row = {"method": method}
        for kind in ("continuation", "reconstruction"):
            nll, hit, n = t[kind]
            row[f"{kind}_nll"], row[f"{kind}_acc"] = nll / n, hit / n
        if "positions" in t:
            row["ratio"] = t["context_tokens"] / t["positions"]
        rows.append(row)
    by = {r["method"]: r for r in rows}
    for r in rows:
        for kind in ("continuation", "reconstruction"):
            none, full = by["none"][f"{kind}_nll"], by["full"][f"{kind}_nll"]
            r[f"{kind}_gap_closed"] = (none - r[f"{kind}_nll"]) / (none - full) if none != full else None
    print(f"{'method':<16}{'ratio':>7}  {'cont NLL':>9}{'acc':>6}{'gap':>6}   {'recon NLL':>9}{'acc':>6}{'gap':>6}")
    for r in rows:
        print(f"{r['method']:<16}{r.get('ratio', 0):>7.1f}  {r['continuation_nll']:>9.3f}{r['continuation_acc']:>6.2f}{r['continuation_gap_closed']:>6.2f}"
              f"   {r['reconstruction_nll']:>9.3f}{r['reconstruction_acc']:>6.2f}{r['reconstruction_gap_closed']:>6.2f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"args": vars(args), "documents": [d["doc_id"] for d in docs], "rows": rows, "per_document": per_doc},
                                         indent=1) + "\n")


if __name__ == "__main__":
    main()
