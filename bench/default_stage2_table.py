"""One table over default trees (bench/default_stage2_arms.sh): per arm and gist checkpoint, factual F1 with its CI,
the paired F1 difference to closed book on the same questions, the share of non-passkey answers holding a key-like
number, passkey accuracy and the global proxy; closed book and full context from the first tree beside them.

Usage: python bench/default_stage2_table.py --ns 10 25 50 --out table.json base=/tmp/a/repo steps16=/tmp/b/repo
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from statistics import mean

import yaml

from gistpoc.evaluate.metrics import bootstrap_ci, paired_difference
from gistpoc.utils import read_jsonl


def method_row(path: Path, threshold: float) -> dict:
    rows = [r for r in read_jsonl(path) if r["status"] == "ok"]
    fact = [r for r in rows if r["qtype"] == "factual"]
    f1 = [r["scores"]["f1"] for r in fact]
    lo, hi = bootstrap_ci(f1, [r["doc_id"] for r in fact], 2000, 0)
    other = [r for r in rows if r["qtype"] != "passkey"]
    keylike = [int(r["scores"]["keylike"]) for r in other]   # score_answers' own score (scoring.keylike_number)
    glob = [r["scores"]["embed_sim"] >= threshold for r in rows if r["qtype"] == "global"]
    pk = [r["scores"]["passkey_correct"] for r in rows if r["qtype"] == "passkey"]
    return {"factual_f1": mean(f1), "factual_f1_ci": [lo, hi], "n_factual": len(f1),
            "f1_by_id": {r["id"]: r["scores"]["f1"] for r in fact}, "docs": {r["id"]: r["doc_id"] for r in fact},
            "keylike": sum(keylike), "n_nonpasskey": len(other), "passkey_acc": mean(pk) if pk else None,
            "global_proxy": mean(glob) if glob else None,
            "examples": [r["prediction"] for r in fact][:4]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ns", nargs="+", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("arms", nargs="+", help="name=tree")
    args = p.parse_args()
    arms = [a.split("=", 1) for a in args.arms]
    first = Path(arms[0][1])
    threshold = yaml.safe_load((first / "config.yaml").read_text())["eval"]["global_proxy_threshold"]
    ref = {m: method_row(first / f"results/eval/{m}/predictions.jsonl", threshold) for m in ("closed_book", "full_context")}
    out = {"reference": {m: {k: v for k, v in r.items() if k not in ("f1_by_id", "docs")} for m, r in ref.items()}, "arms": {}}
    print("| arm | method | factual F1 [95 % CI] | minus closed book, paired [95 % CI] | key-like answers | passkey | global (proxy) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for m, r in ref.items():
        print(f"| - | {m} | {r['factual_f1']:.0%} [{r['factual_f1_ci'][0]:.0%}, {r['factual_f1_ci'][1]:.0%}] | - | "
              f"{r['keylike']} of {r['n_nonpasskey']} | {r['passkey_acc']:.0%} | {r['global_proxy']:.0%} |")
    for name, tree in arms:
        for n in args.ns:
            r = method_row(Path(tree) / f"results/eval/gist{n}/predictions.jsonl", threshold)
            d, lo, hi, k = paired_difference(r["f1_by_id"], ref["closed_book"]["f1_by_id"], r["docs"])
            out["arms"].setdefault(name, {})[f"gist{n}"] = {**{k_: v for k_, v in r.items() if k_ not in ("f1_by_id", "docs")},
                                                          "minus_closed_book": [d, lo, hi, k]}
            print(f"| {name} | gist{n} | {r['factual_f1']:.0%} [{r['factual_f1_ci'][0]:.0%}, {r['factual_f1_ci'][1]:.0%}] | "
                  f"{d:+.0%} [{lo:+.0%}, {hi:+.0%}] | {r['keylike']} of {r['n_nonpasskey']} | {r['passkey_acc']:.0%} | "
                  f"{r['global_proxy']:.0%} |")
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
