"""Issue 14's quality check on a paper-scale run: the eager engine's answers (device.sh pipeline, results/engine_check/)
against the run's own compiled-engine answers for the same questions, scored the same way.

    python bench/paper_scale/engine_check.py --run /tmp/qwen-ps --out docs/results/<run>/engine_check.json

Prints and writes, per method: questions compared, identical answers, where the others first differ (characters into
the answer), and passkey accuracy / factual F1 under each engine.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from gistpoc.evaluate.metrics import passkey_correct, token_f1


def read(path: Path) -> dict[str, dict]:
    with open(path) as fh:
        return {r["id"]: r for r in map(json.loads, fh)}


def score(rows: list[dict]) -> dict:
    pk = [passkey_correct(r["prediction"], r["answer"]) for r in rows if r["qtype"] == "passkey"]
    f1 = [token_f1(r["prediction"], r["answer"]) for r in rows if r["qtype"] == "factual"]
    return {"passkey_acc": statistics.mean(pk) if pk else None, "passkey_n": len(pk),
            "factual_f1": statistics.mean(f1) if f1 else None, "factual_n": len(f1)}


def first_difference(a: str, b: str) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def compare(eager: dict[str, dict], compiled: dict[str, dict]) -> dict:
    ids = sorted(set(eager) & set(compiled))
    if not ids:
        raise SystemExit("no question answered by both engines")
    e = [eager[i] for i in ids]
    c = [compiled[i] for i in ids]
    diffs = [first_difference(a["prediction"], b["prediction"]) for a, b in zip(e, c) if a["prediction"] != b["prediction"]]
    return {"questions": len(ids), "identical": len(ids) - len(diffs),
            "first_difference_chars_median": statistics.median(diffs) if diffs else None,
            "eager": score(e), "compiled": score(c),
            "engines": sorted({r.get("engine", "?") for r in e}) + sorted({r.get("engine", "?") for r in c})}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="the run tree (results/engine_check/ and results/eval/<method>/answers.jsonl)")
    p.add_argument("--methods", nargs="+", default=["closed_book", "full_context"])
    p.add_argument("--out", required=True)
    args = p.parse_args()
    run = Path(args.run)
    out = {}
    for m in args.methods:
        out[m] = compare(read(run / "results/engine_check" / f"{m}.eager.jsonl"), read(run / "results/eval" / m / "answers.jsonl"))
        r = out[m]
        print(f"{m}: {r['identical']} of {r['questions']} identical (others first differ at character "
              f"{r['first_difference_chars_median']}); passkey {r['eager']['passkey_acc']} eager vs {r['compiled']['passkey_acc']} compiled; "
              f"factual F1 {r['eager']['factual_f1']:.4f} vs {r['compiled']['factual_f1']:.4f}")
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
