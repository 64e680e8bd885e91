"""The README's figures come from committed data files: each measured figure it states is recomputed here from its
file, and a figure with a unit (%, minutes, seconds, ms, x) that no check below covers fails the test, so a number
without a data file cannot creep back in (e.g. a stale "23.9 minutes" where the timing file says 1,040 s)."""

from __future__ import annotations

import csv
import gzip
import json
import re

from gistpoc.evaluate.metrics import paired_difference
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()
CURVE = ROOT / "docs/results/qwen2.5-coder-0.5b-curve"
PROBE = ROOT / "bench/results/gist_content_probe_qwen_curve.json"
CONTROL = ROOT / "bench/results/last_default_controls/gist25_scrambled/predictions.jsonl"


def summary(path) -> dict[str, dict]:
    return {r["method"]: r for r in csv.DictReader(open(path))}


def pct(x: str) -> str:
    return f"{float(x):.0%}".replace("%", " %")


def keylike(row: dict) -> str:
    """"k of n": the summary's keylike_rate as the count of answers it is."""
    n = int(float(row["keylike_rate_n"]))
    return f"{round(float(row['keylike_rate']) * n)} of {n}"


def default_dag_minutes() -> str:
    text = (ROOT / "bench/results/time_default_dag.txt").read_text()
    seconds = float(re.search(r"full DAG from a fresh clone .*?: ([\d.]+) s", text).group(1))
    return f"{seconds / 60:.1f}"


def claims() -> list[str]:
    """Every figure-bearing sentence of the README, rebuilt from its data file."""
    d = summary(ROOT / "bench/results/last_default_summary.csv")
    q = summary(CURVE / "summary.csv")
    gist_keys = {pct(d[f"gist{n}"]["passkey_acc"]) for n in (10, 25, 50)}
    gist_f1 = sorted(round(float(d[f"gist{n}"]["factual_f1"]) * 100) for n in (10, 25, 50))
    assert len(gist_keys) == 1, gist_keys
    control = [json.loads(line)["scores"]["f1"] for line in open(CONTROL) if json.loads(line)["qtype"] == "factual"]
    f1 = {m: {r["id"]: r["scores"]["f1"] for r in rows if r["qtype"] == "factual"}
          for m in ("gist16per256", "gist25", "closed_book") for rows in [curve_rows(m)]}
    docs = {r["id"]: r["doc_id"] for r in curve_rows("gist25")}
    # "as 25 gist tokens for the whole document do": the paired difference includes 0; "against closed book's": above it
    _, lo, hi, _ = paired_difference(f1["gist16per256"], f1["gist25"], docs)
    assert lo < 0 < hi
    _, lo, _, _ = paired_difference(f1["gist16per256"], f1["closed_book"], docs)
    assert lo > 0
    probe = [r for r in json.loads(PROBE.read_text())["rows"]]
    acc = sorted(round(r["reconstruction_acc"] * 100) for r in probe if "ratio" in r)
    none = next(r for r in probe if r["method"] == "none")
    length = {r["method"]: r for r in json.loads((ROOT / "bench/results/stage1_length_ab/probe_heldout.json").read_text())["rows"]}
    return [
        f"**{default_dag_minutes()} minutes** from a fresh clone",
        f"on {int(float(d['gist25']['n_documents']))} short test documents",
        f"gist-10/25/50 find the\npasskey in {gist_keys.pop()} of them (full context {pct(d['full_context']['passkey_acc'])}, "
        f"RAG {pct(d['rag']['passkey_acc'])}, closed book {pct(d['closed_book']['passkey_acc'])}) and answer the other questions "
        f"in words (gist-50 holds a five-digit number in {keylike(d['gist50'])} answers), "
        f"at factual F1 {gist_f1[0]}-{gist_f1[-1]} % against closed book's {pct(d['closed_book']['factual_f1'])} and their "
        f"own shuffled-document control's {pct(sum(control) / len(control))}",
        f"gist tokens carry a planted passkey at {pct(q['gist25']['passkey_acc'])} and",
        f"about {int(float(q['gist25']['n_documents']))} documents of 2k-8k tokens",
        f"16 gist tokens per 256 tokens of context ({float(q['gist16per256']['compression_ratio_median']):.0f}x) answer factual questions at "
        f"F1 {pct(q['gist16per256']['factual_f1'])}, as 25 gist tokens for the whole document do "
        f"({float(q['gist25']['compression_ratio_median']):.0f}x, {pct(q['gist25']['factual_f1'])}), against closed book's "
        f"{pct(q['closed_book']['factual_f1'])} and full context's {pct(q['full_context']['factual_f1'])}, and state the global theme "
        f"for {pct(q['gist16per256']['global_judge_acc'])} of documents by the LLM judge (RAG {pct(q['rag']['global_judge_acc'])}, "
        f"full context {pct(q['full_context']['global_judge_acc'])})",
        f"at every ratio the gists restore {acc[0]}-{acc[-1]} % of a span's tokens, against "
        f"{none['reconstruction_acc'] * 100:.0f} % with no context",
        f"gists at {length['gist16per128@C_s1']['ratio']:.0f}x restore {length['gist16per128@C_s1']['reconstruction_acc'] * 100:.0f} % "
        f"of a held-out span's tokens, at {length['gist16per512@V_s1']['ratio']:.0f}x still "
        f"{length['gist16per512@V_s1']['reconstruction_acc'] * 100:.0f} %",
    ]


def curve_rows(method: str) -> list[dict]:
    with gzip.open(CURVE / "predictions" / f"{method}.jsonl.gz", "rt") as f:
        return [json.loads(line) for line in f if line.strip()]


def test_every_readme_figure_matches_its_data_file():
    text = README
    for claim in claims():
        flat = " ".join(claim.split())
        assert flat in " ".join(text.split()), f"README does not say (or no longer matches its data): {flat!r}"


def test_no_readme_figure_without_a_check():
    covered = " ".join(" ".join(c.split()) for c in claims())
    found = re.findall(r"\d[\d,.]*\s?(?:%|minutes?|min\b|seconds?|s\b|ms\b|x\b)", " ".join(README.split()))
    unchecked = [f for f in found if f not in covered]
    assert not unchecked, f"README figures with no data-file check in tests/published/test_readme.py: {unchecked}"


def test_readme_names_no_commit_and_fits_a_first_screen():
    assert not re.search(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)[0-9a-f]{7,40}\b", README), "commit hashes belong in docs/ and CHANGELOG.md"
    first = README.split("\n## ", 1)[0]
    assert "bash run.sh" in first and "bash test.sh" in first and "Finding so far" in first
    assert len(first.split()) < 400


def test_the_stale_timing_case_fails():
    """Issue 25's example: "23.9 minutes" in the README where the timing file says 1,040 s fails the figure check."""
    stale = README.replace(f"**{default_dag_minutes()} minutes**", "**23.9 minutes**")
    assert stale != README
    assert any(" ".join(c.split()) not in " ".join(stale.split()) for c in claims())
