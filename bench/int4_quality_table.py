"""Issue 29's quality check as a table: one answer set (the int4 engine's) against reference sets (bf16, NF4) on the same
questions, per method and question type: answers identical, each quality number under each engine, and the paired
difference (test minus reference) with its 95 % CI, resampling documents (gistpoc.evaluate.metrics.paired_difference,
2,000 resamples, seed 0).

    python bench/int4_quality_table.py --test int4-fbgemm=<dir> --ref bf16=<dir> --ref nf4=<dir> \\
        --methods closed_book full_context gist16per128 --out table.json > table.md

Each <dir> holds <method>.jsonl(.gz). The numbers are recomputed from the answers: passkey accuracy and factual token F1
(gistpoc.evaluate.metrics, as score_answers computes them), and for global and reasoning questions the proxy from the
stored embedding similarity (`scores.embed_sim`, the run's metric embedder): global proxy accuracy at >= 0.5
(`eval.global_proxy_threshold`), reasoning mean similarity. A file without scores (an answers file) gives passkey and F1
only. A method missing from a reference's folder is left out of that reference's rows.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gistpoc.evaluate.metrics import paired_difference, passkey_correct, token_f1
from gistpoc.utils import read_jsonl

PROXY_THRESHOLD = 0.5
METRICS = (("passkey", "passkey accuracy"), ("factual", "factual F1"), ("global", "global proxy accuracy"),
           ("reasoning", "reasoning similarity"))


def item_score(row: dict) -> float | None:
    """The row's quality number for its question type, None where it has none."""
    q = row["qtype"]
    if q == "passkey":
        return float(passkey_correct(row["prediction"], row["answer"]))
    if q == "factual":
        return token_f1(row["prediction"], row["answer"])
    sim = (row.get("scores") or {}).get("embed_sim")
    if sim is None:
        return None
    return float(sim >= PROXY_THRESHOLD) if q == "global" else float(sim)


def load(folder: Path, method: str) -> dict[str, dict] | None:
    for name in (f"{method}.jsonl", f"{method}.jsonl.gz"):
        if (folder / name).exists():
            return {r["id"]: r for r in read_jsonl(folder / name)}
    return None


def compare(test: dict[str, dict], ref: dict[str, dict]) -> dict:
    """Per question type: n, identical answers, the two means and the paired difference test - ref with its CI."""
    out = {}
    ids = sorted(test.keys() & ref.keys())
    if not ids:
        raise ValueError("the two answer sets share no question id")
    for qtype, _ in METRICS:
        sel = [i for i in ids if test[i]["qtype"] == qtype]
        if not sel:
            continue
        a = {i: item_score(test[i]) for i in sel}
        b = {i: item_score(ref[i]) for i in sel}
        groups = {i: test[i]["doc_id"] for i in sel}
        row = {"n": len(sel), "identical": sum(test[i]["prediction"] == ref[i]["prediction"] for i in sel)}
        if all(v is not None for v in a.values()) and all(v is not None for v in b.values()):
            diff, lo, hi, _ = paired_difference(a, b, groups)
            row.update(test=sum(a.values()) / len(a), ref=sum(b.values()) / len(b), diff=diff, lo=lo, hi=hi)
        out[qtype] = row
    return out


def pct(x: float) -> str:
    return f"{100 * x:.1f}"


def table(results: dict, test_label: str) -> str:
    lines = ["| method | question type | n | reference | identical answers | reference's number | "
             f"{test_label}'s number | {test_label} minus reference [95 % CI] |", "|---|---|---|---|---|---|---|---|"]
    names = dict(METRICS)
    for method, refs in results.items():
        for ref, rows in refs.items():
            for qtype, r in rows.items():
                nums = ("-", "-", "-") if "diff" not in r else (
                    pct(r["ref"]), pct(r["test"]), f"{pct(r['diff'])} [{pct(r['lo'])}, {pct(r['hi'])}]")
                lines.append(f"| {method} | {qtype} ({names[qtype]}) | {r['n']} | {ref} | {r['identical']} | {nums[0]} | {nums[1]} | {nums[2]} |")
    return "\n".join(lines)


def labelled_dir(arg: str) -> tuple[str, Path]:
    label, sep, path = arg.partition("=")
    if not sep or not label:
        raise argparse.ArgumentTypeError(f"expected LABEL=DIR, got {arg!r}")
    return label, Path(path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--test", type=labelled_dir, required=True)
    p.add_argument("--ref", type=labelled_dir, action="append", required=True)
    p.add_argument("--methods", nargs="+", default=["closed_book", "full_context"])
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    label, tdir = a.test
    results: dict = {}
    for method in a.methods:
        test = load(tdir, method)
        if test is None:
            print(f"int4_quality_table: no {method}.jsonl(.gz) in {tdir}", file=sys.stderr)
            return 1
        for ref_label, rdir in a.ref:
            ref = load(rdir, method)
            if ref is not None:
                results.setdefault(method, {})[ref_label] = compare(test, ref)
    Path(a.out).write_text(json.dumps({"test": label, "methods": results}, indent=1) + "\n")
    print(table(results, label))
    return 0


if __name__ == "__main__":
    sys.exit(main())
