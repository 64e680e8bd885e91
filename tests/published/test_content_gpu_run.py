"""bench/results/qwen_content_gpu_run (the first content run, stopped at 34 of 50 steps): the README's results table
and the training figures it quotes are recomputed from the committed files."""

from __future__ import annotations

import csv
import json
import re

from tests.conftest import ROOT
from tests.published import runfiles

RUN = ROOT / "bench" / "results" / "qwen_content_gpu_run"
TEXT = (RUN / "README.md").read_text()
FLAT = " ".join(TEXT.split())
CURVE = ROOT / "docs" / "results" / "qwen2.5-coder-0.5b-curve"
NAMES = {"closed book": "closed_book", "full context": "full_context", "RAG": "rag", "**gist-25 (this run)**": "gist25",
         "gist-25 of the token-shuffled document": "gist25_scrambled", "gist-25 of another test document": "gist25_otherdoc",
         "truncate_head25": "truncate_head25", "ppl_select25": "ppl_select25"}


def _summary(path) -> dict:
    return {r["method"]: r for r in csv.DictReader(open(path))}


def _cell_matches(cell: str, row: dict, key: str) -> bool:
    """``6 % [3, 9]`` or ``100 %`` (bold or not) against a summary value and its CI, in whole percent."""
    m = re.fullmatch(r"\**(\d+) %(?: \[(\d+), (\d+)\])?\**", cell)
    assert m, cell
    want = [round(float(row[key]) * 100)] + ([round(float(row[f"{key}_lo"]) * 100), round(float(row[f"{key}_hi"]) * 100)] if m[2] else [])
    return [int(g) for g in m.groups() if g is not None] == want


def test_the_results_table_is_the_summary():
    s, curve = _summary(RUN / "summary.csv"), _summary(CURVE / "summary.csv")
    table = runfiles.table(TEXT, "## Results (gist-25 and what answers beside it)")
    assert len(table) == len(NAMES) + 1
    for cells in table:
        row = curve["gist25"] if cells[0].startswith("gist-25 in the curve run") else s[NAMES[cells[0]]]
        for cell, key in zip(cells[1:], ("factual_f1", "passkey_acc", "global_proxy_acc")):
            assert _cell_matches(cell, row, key), (cells[0], key, cell)


def test_the_training_figures():
    s1 = json.loads((RUN / "training" / "stage1-gist25_summary.json").read_text())
    s2 = json.loads((RUN / "training" / "gist25_summary.json").read_text())
    assert s1["steps"] == 159 and s1["stopped_by"] == "time_limit" and "**159 steps in 6 minutes**" in TEXT
    assert s2["steps"] == 64 and "the 64 stage-2 steps" in FLAT
    checks = [r for r in csv.DictReader(open(RUN / "training" / "stage1-gist25_eval_log.csv")) if r["kind"].startswith("passkey")]
    assert sorted({int(r["step"]) for r in checks}) == [50, 100, 150, 159] and all(float(r["value"]) == 0.0 for r in checks)
    log = (RUN / "logs" / "pretrain_gist16chunked.log").read_text()
    assert "step 80/4000 loss 2.2441 grad 110.266" in log and "step 81/4000 loss 2.2711 grad 181.912" in log
    assert "gist embedding norm nan" in log and "step 80 grad norm 110.3, step 81 181.9" in FLAT


def test_the_cpu_replay_it_quotes():
    probe = json.loads((ROOT / "bench" / "results" / "nan_probe_qwen_content_cpu.json").read_text())
    assert probe["state_step"] == 50 and probe["fingerprint_matches"] is False
    steps = probe["steps"]
    assert {s["step"] for s in steps} == {81} and all(not s["nonfinite_params"] for s in steps)
    losses = sorted(s["loss"] for s in steps)
    norms = sorted(s["finite_grad_norm"] for s in steps)
    assert f"every loss finite ({losses[0]:.2f}-{losses[-1]:.2f}), gradient norms {norms[0]:.2f}-{norms[-1]:.2f}" in FLAT
    assert f"{round(sum(s['seconds'] for s in steps) / 60)} minutes" in FLAT


def test_the_volume_figures():
    v = json.loads((RUN / "volume_stats.json").read_text())
    assert (f"{v['tokens']:,} tokens in {v['pages']:,} pages of 14 Debian documentation packages, {v['dropped_overlap']} pages dropped "
            f"for sharing a {v['overlap_ngram_words']}-word passage") in FLAT
