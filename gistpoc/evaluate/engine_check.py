"""The engine check: one engine's answers against another's for the same questions, scored the same way.

The workflow's `check_engine` rule compares the eager engine's answers (`eval.engine_check`) with the run's own; by
hand, any two sets of answer files:

    # a run tree: results/engine_check/<method>.eager.jsonl against results/eval/<method>/answers.jsonl
    python -m gistpoc.evaluate.engine_check --run <tree> --out engine_check.json
    # any two sets of answer files, {method} in each pattern (.jsonl or .jsonl.gz), labelled
    python -m gistpoc.evaluate.engine_check --a eager=<dir>/engine_check-{method}.eager.jsonl.gz \\
        --b compiled_kernels=<dir>/recheck-{method}.jsonl.gz --out ...

Prints and writes, per method: questions compared, identical answers, where the others first differ (characters into
the answer), and passkey accuracy / factual F1 under each engine.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from gistpoc.evaluate.metrics import passkey_correct, token_f1
from gistpoc.utils import read_jsonl


def read(path: Path) -> dict[str, dict]:
    return {r["id"]: r for r in read_jsonl(path)}  # .jsonl or .jsonl.gz; a bad line is an error naming it


def score(rows: list[dict]) -> dict:
    pk = [passkey_correct(r["prediction"], r["answer"]) for r in rows if r["qtype"] == "passkey"]
    f1 = [token_f1(r["prediction"], r["answer"]) for r in rows if r["qtype"] == "factual"]
    return {"passkey_acc": statistics.mean(pk) if pk else None, "passkey_n": len(pk),
            "factual_f1": statistics.mean(f1) if f1 else None, "factual_n": len(f1)}


def fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"   # a passkey-only set has no factual F1


def first_difference(a: str, b: str) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def compare(a: dict[str, dict], b: dict[str, dict], labels: tuple[str, str] = ("eager", "compiled")) -> dict:
    ids = sorted(set(a) & set(b))
    if not ids:
        raise ValueError("no question answered by both engines")
    ra = [a[i] for i in ids]
    rb = [b[i] for i in ids]
    diffs = [first_difference(x["prediction"], y["prediction"]) for x, y in zip(ra, rb) if x["prediction"] != y["prediction"]]
    return {"questions": len(ids), "identical": len(ids) - len(diffs),
            "first_difference_chars_median": statistics.median(diffs) if diffs else None,
            labels[0]: score(ra), labels[1]: score(rb),
            "engines": sorted({r.get("engine", "?") for r in ra}) + sorted({r.get("engine", "?") for r in rb})}


def labelled(arg: str) -> tuple[str, str]:
    label, sep, pattern = arg.partition("=")
    if not sep or not label or "{method}" not in pattern:
        raise argparse.ArgumentTypeError(f"expected LABEL=PATTERN with {{method}} in the pattern, got {arg!r}")
    return label, pattern


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", help="the run tree (results/engine_check/<method>.eager.jsonl and results/eval/<method>/answers.jsonl)")
    p.add_argument("--a", type=labelled, help="LABEL=PATTERN: the first engine's answers ({method} in the path); instead of --run")
    p.add_argument("--b", type=labelled, help="LABEL=PATTERN: the second engine's answers")
    p.add_argument("--methods", nargs="+", default=["closed_book", "full_context"])
    p.add_argument("--out", required=True)
    args = p.parse_args()
    if args.run:
        if args.a or args.b:
            p.error("--run or --a/--b, not both")
        a = ("eager", str(Path(args.run) / "results/engine_check/{method}.eager.jsonl"))
        b = ("compiled", str(Path(args.run) / "results/eval/{method}/answers.jsonl"))
    elif args.a and args.b:
        a, b = args.a, args.b
        if a[0] == b[0]:
            p.error(f"--a and --b need different labels, both are {a[0]!r}")
    else:
        p.error("give --run, or --a and --b")
    out = {}
    for m in args.methods:
        out[m] = r = compare(read(Path(a[1].format(method=m))), read(Path(b[1].format(method=m))), (a[0], b[0]))
        print(f"{m}: {r['identical']} of {r['questions']} identical (others first differ at character "
              f"{r['first_difference_chars_median']}); passkey {r[a[0]]['passkey_acc']} {a[0]} vs {r[b[0]]['passkey_acc']} {b[0]}; "
              f"factual F1 {fmt(r[a[0]]['factual_f1'])} vs {fmt(r[b[0]]['factual_f1'])}")
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
