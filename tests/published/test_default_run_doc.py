"""docs/default_run.md's results table states what the timed default run's summary holds
(bench/results/last_default_summary.csv, written by bench/time_default_dag.sh), and its speed paragraph the timing."""

from __future__ import annotations

import csv
import re

import pytest

from tests.conftest import ROOT
from tests.published.runfiles import pct as with_ci

DOC = (ROOT / "docs/default_run.md").read_text()
SUMMARY = {r["method"]: r for r in csv.DictReader(open(ROOT / "bench/results/last_default_summary.csv"))}
NAMES = {"closed book": "closed_book", "full context": "full_context", "RAG (64-token chunks, top-3)": "rag",
         "gist-10": "gist10", "gist-25": "gist25", "gist-50": "gist50", "truncate_head25 (first 25 tokens)": "truncate_head25",
         "rag_gist25 (top-1 chunk + gist-25)": "rag_gist25"}


def pct(x: str) -> str:
    return f"{float(x) * 100:.0f}"


def doc_rows() -> dict[str, list[str]]:
    out = {}
    for line in DOC.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] in NAMES:
            out[NAMES[cells[0]]] = cells[1:]
    return out


def test_the_table_has_every_single_method_row():
    assert set(doc_rows()) == set(NAMES.values())


@pytest.mark.parametrize("method", sorted(NAMES.values()))
def test_each_row_is_the_summary(method):
    r, cells = SUMMARY[method], doc_rows()[method]
    assert cells[0].replace("*", "") == with_ci(r, "passkey_acc")
    assert cells[1] == with_ci(r, "factual_f1")
    assert cells[2] == (f"{pct(r['global_proxy_acc'])} %" if r["global_proxy_acc"] else "-")
    n = int(float(r["keylike_rate_n"]))
    assert cells[3] == f"{round(float(r['keylike_rate']) * n)} of {n}"
    assert cells[4] == f"{float(r['ttft_ms_median']):.0f} ms"
    kv = f"{float(r['kv_bytes_median']) / 2**20:.1f} MiB"
    if r["gist_kv_bytes_median"]:
        gist = float(r["gist_kv_bytes_median"]) / 2**20
        kv += f" ({gist:.2f} MiB)" if gist < 1 else f" ({gist:.1f} MiB)"
    assert cells[5] == kv


def test_speed_paragraph_is_the_timing_file():
    text = (ROOT / "bench/results/time_default_dag.txt").read_text()
    seconds = float(re.search(r"full DAG from a fresh clone .*?: ([\d.]+) s", text).group(1))
    commit = re.search(r"commit: (\w+)", text).group(1)
    flat = " ".join(DOC.split())
    assert f"**The default DAG took {seconds:.0f} s ({seconds / 60:.1f} min) from a fresh clone" in flat
    assert f"(commit {commit})" in flat and f"at commit {commit}," in flat
