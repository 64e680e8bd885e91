"""Reading a committed run folder under docs/results and its README: the helpers of the published-run tests."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path


def rows(run: Path, name: str) -> list[dict]:
    """One predictions file (``predictions/<name>.jsonl.gz``)."""
    with gzip.open(run / "predictions" / f"{name}.jsonl.gz", "rt") as f:
        return [json.loads(line) for line in f if line.strip()]


def judgments(run: Path) -> dict:
    with gzip.open(run / "judgments.jsonl.gz", "rt") as f:
        return {j["key"]: j for j in map(json.loads, f)}


def summary(run: Path) -> dict:
    with open(run / "summary.csv") as f:
        return {r["method"]: r for r in csv.DictReader(f)}


def table(readme: str, heading: str) -> list[list[str]]:
    """The cells of the first markdown table after a heading line of a README."""
    lines = readme.split(heading, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    out = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        out.append([c.strip() for c in line.strip("|").split("|")])
    return out


def pct(row: dict, key: str) -> str:
    """``22 % [11, 34]``: a summary value with its CI, in percent ('-' when the run has none)."""
    if row.get(key) in (None, ""):
        return "-"
    v, lo, hi = (float(row[k]) * 100 for k in (key, key + "_lo", key + "_hi"))
    return f"{v:.0f} % [{lo:.0f}, {hi:.0f}]"


def passkey_rows(run: Path) -> list[dict]:
    with open(run / "passkey_breakdown.csv") as f:
        return list(csv.DictReader(f))


def check_paired_gains(run: Path, gains: list[list[str]], names: dict) -> None:
    """Each row ``[what, questions, gain, CI]`` of a README's paired-gains table (``factual F1: A - B`` or ``global
    judge: A - B``, A and B named through ``names``) equals ``paired_difference`` over the committed answers."""
    from gistpoc.evaluate.metrics import paired_difference
    from gistpoc.evaluate.summary import item_key

    verdicts = judgments(run)

    def values(method: str, qtype: str, metric: str):
        vals, docs = {}, {}
        for r in rows(run, method):
            if r["qtype"] == qtype:
                vals[r["id"]] = r["scores"]["f1"] if metric == "f1" else verdicts.get(item_key(r), {}).get("score")
                docs[r["id"]] = r["doc_id"]
        return vals, docs

    for what, n, gain, ci in gains:
        metric, pair = what.split(": ", 1)
        a, b = (names.get(x, x) for x in pair.split(" - "))
        qtype, key = ("factual", "f1") if metric == "factual F1" else ("global", "judge")
        va, docs = values(a, qtype, key)
        vb, _ = values(b, qtype, key)
        mean, lo, hi, count = paired_difference(va, vb, docs, 2000, 0)
        assert (int(n), gain, ci) == (count, f"{mean * 100:+.1f}", f"[{lo * 100:+.1f}, {hi * 100:+.1f}]"), what
