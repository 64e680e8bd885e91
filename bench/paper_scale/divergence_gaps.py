"""Where two engines' greedy answers part, how close was the call? For every question two answer sets (gistpoc.evaluate.engine_check's
--a / --b patterns) answer differently, the first token where they part, re-scored in float32 on CPU by the plain
Hugging Face model: the logit gap between the two engines' tokens there, and the gap between the top two tokens.
A gap of a bf16 rounding step or two (~0.06-0.25 at these logit sizes) is a near-tie: either token is the model's
answer to bf16 precision; a larger one would point at a bug.

    python bench/paper_scale/divergence_gaps.py --config <run>/config.yaml --model-ref results/model/base \\
        --dataset test.gist25.jsonl --a eager=<...>/{method}.eager.jsonl --b compiled=<...>/{method}.jsonl --out gaps.json

With ``--b-quantization int4-tinygemm`` (an int4 engine as --b), a second float32 CPU model with the same int4 weights
(``gistpoc.int4``: the numbers FBGEMM and gemlite read, through tinygemm's CPU kernel) scores the same prefix: which of
the two tokens the 4-bit weights prefer there, and how far 4-bit rounding moved the margin between them. A parting the
int4 weights themselves choose is a near-tie at 4-bit precision, whatever its float32 gap.

The answers are compared as token ids of their text re-encoded (the generated ids are not stored; re-encoding decoded
text can split a word differently from the generation, which would show as a part at a token neither engine chose).
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from gistpoc.config import load_config
from gistpoc.evaluate.engine_check import labelled, read
from gistpoc.gist.template import encode_prefix, encode_question, prompt_template
from gistpoc.model import load_model
from gistpoc.utils import read_jsonl


def prompt_ids(tok, template, method: str, rec: dict) -> list[int]:
    context = {"closed_book": "", "full_context": rec["context"]}[method]
    return encode_prefix(tok, template, context, []).prefix_ids + encode_question(tok, template, rec["question"])


@torch.no_grad()
def gap_at_parting(model, tok, prompt: list[int], a: str, b: str, eos_ids: list[int], b_model=None) -> dict:
    """The two answers as token ids; where one ended, its token there is the end-of-turn id the model scores highest."""
    ta, tb = tok.encode(a, add_special_tokens=False), tok.encode(b, add_special_tokens=False)
    j = next((i for i, (x, y) in enumerate(zip(ta, tb)) if x != y), min(len(ta), len(tb)))
    logits = model(torch.tensor([prompt + ta[:j]])).logits[0, -1].float()
    end = max(eos_ids, key=lambda i: logits[i].item())
    xa, xb = (ta[j] if j < len(ta) else end), (tb[j] if j < len(tb) else end)
    top = torch.topk(logits, 2)
    la, lb = logits[xa].item(), logits[xb].item()
    out = {"token": j, "a_token": tok.decode([xa]), "b_token": tok.decode([xb]),
           "a_logit": round(la, 4), "b_logit": round(lb, 4), "gap_a_b": round(abs(la - lb), 4),
           "top2_gap": round((top.values[0] - top.values[1]).item(), 4),
           "a_b_are_top2": sorted([xa, xb]) == sorted(top.indices.tolist()),
           "float32_prefers": "a" if la > lb else "b"}
    if b_model is not None:
        qlogits = b_model(torch.tensor([prompt + ta[:j]])).logits[0, -1].float()
        qa, qb = qlogits[xa].item(), qlogits[xb].item()
        out.update(quantized_prefers="a" if qa > qb else "b", quantized_margin_b_over_a=round(qb - qa, 4),
                   margin_shift=round((qb - qa) - (lb - la), 4),
                   quantized_top_is_b=int(qlogits.argmax().item()) == xb)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="the run's config (its model: section and eval.baseline_instruction)")
    p.add_argument("--model-ref", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--a", type=labelled, required=True)
    p.add_argument("--b", type=labelled, required=True)
    p.add_argument("--methods", nargs="+", default=["closed_book", "full_context"])
    p.add_argument("--qtypes", nargs="+", default=None, help="only questions of these types (a CPU pass over an 8k-token "
                   "prompt takes about a minute: e.g. passkey factual for full context)")
    p.add_argument("--ids", nargs="+", default=None, help="only these question ids")
    p.add_argument("--b-quantization", default=None, help="e.g. int4-tinygemm: also score each parting with the --b "
                   "engine's weight format on CPU in float32 (group size: the config's eval.int4_group_size)")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    cfg = load_config(args.config)
    loaded = load_model({**cfg["model"], "device": "cpu", "dtype": "float32", "quantization": "none"}, args.model_ref)
    b_model = None
    if args.b_quantization:
        b_model = load_model({**cfg["model"], "device": "cpu", "dtype": "float32", "quantization": args.b_quantization,
                              "int4_group_size": cfg["eval"].get("int4_group_size", 128)}, args.model_ref).model
    model, tok = loaded.model, loaded.tokenizer
    template = prompt_template(tok, cfg["eval"]["baseline_instruction"])
    records = {r["id"]: r for r in read_jsonl(args.dataset)}
    out = {}
    for m in args.methods:
        ra, rb = read(Path(args.a[1].format(method=m))), read(Path(args.b[1].format(method=m)))
        rows = []
        for i in sorted(set(ra) & set(rb)):
            if ra[i]["prediction"] == rb[i]["prediction"] or (args.qtypes and ra[i]["qtype"] not in args.qtypes) \
                    or (args.ids and i not in args.ids):
                continue
            g = gap_at_parting(model, tok, prompt_ids(tok, template, m, records[i]), ra[i]["prediction"], rb[i]["prediction"],
                               loaded.eos_ids, b_model)
            rows.append({"id": i, **g})
            print(f"{m} {i}: token {g['token']}: {args.a[0]} {g['a_token']!r} {g['a_logit']} vs {args.b[0]} {g['b_token']!r} "
                  f"{g['b_logit']} (gap {g['gap_a_b']}, top-2 gap {g['top2_gap']}, top-2: {g['a_b_are_top2']})", flush=True)
        gaps = [r["gap_a_b"] for r in rows]
        out[m] = {"labels": [args.a[0], args.b[0]], "qtypes": args.qtypes, "differing": len(rows), "gap_max": max(gaps) if gaps else None,
                  "gap_median": statistics.median(gaps) if gaps else None,
                  "float32_prefers_b": sum(r["float32_prefers"] == "b" for r in rows),
                  **({"b_quantization": args.b_quantization,
                      "quantized_prefers_b": sum(r["quantized_prefers"] == "b" for r in rows),
                      "margin_shift_median_abs": statistics.median(abs(r["margin_shift"]) for r in rows) if rows else None}
                     if b_model is not None else {}),
                  "rows": rows}
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
