"""docs/results/qwen2.5-coder-0.5b-llm-qa: the run with LLM-written questions and the LLM judge (issues 25-27). Every
figure its README states is recomputed here from the committed files: summary.csv from the predictions and the
judgments, the README's tables from summary.csv, the paired gains, the judge's calibration and the writer's counts."""

from __future__ import annotations

import copy
import csv
import gzip
import json
import re
import statistics

import pytest
import yaml

from gistpoc.evaluate.summary import item_key, summarize_method
from tests.conftest import ROOT
from tests.published import runfiles
from tests.published.test_published_results import recomputes_from_predictions

RUN = ROOT / "docs" / "results" / "qwen2.5-coder-0.5b-llm-qa"
METHODS = ["closed_book", "full_context", "rag", "gist25", "truncate_head25", "truncate_tail25", "kv_select25", "mean_pool25",
           "ppl_select25", "rag_gist25"]
CONTROLS = {"control: gist-25 of another test document": "control-gist25_otherdoc",
            "control: gist-25 of the token-shuffled document": "control-gist25_scrambled"}
README = (RUN / "README.md").read_text()
NAMES = {"closed book": "closed_book", "full context": "full_context", "RAG": "rag", "gist-25": "gist25",
         "RAG top-1 + gist-25": "rag_gist25", "another document's gist": "control-gist25_otherdoc",
         "the shuffled document's gist": "control-gist25_scrambled"}


def _rows(name: str) -> list[dict]:
    return runfiles.rows(RUN, name)


def _judgments() -> dict:
    return runfiles.judgments(RUN)


def _cfg() -> dict:
    return yaml.safe_load((RUN / "config.yaml").read_text())


def _table(heading: str) -> list[list[str]]:
    return runfiles.table(README, heading)


_pct = runfiles.pct


def _summary() -> dict:
    return runfiles.summary(RUN)


def test_summary_recomputes_from_the_predictions_and_the_judgments(tmp_path):
    recomputes_from_predictions(RUN, METHODS, tmp_path)


def test_an_edited_judgment_is_caught():
    """The check itself: one of gist-25's global verdicts flipped changes its global_judge_acc."""
    cfg, judgments = _cfg(), _judgments()
    rows = _rows("gist25")
    args = (cfg["eval"]["global_proxy_threshold"], cfg["eval"]["bootstrap_samples"], cfg["seed"])
    want = float(_summary()["gist25"]["global_judge_acc"])
    assert summarize_method(rows, *args, judgments=judgments)["global_judge_acc"] == pytest.approx(want, abs=1e-12)
    key = item_key(next(r for r in rows if r["qtype"] == "global"))
    edited = copy.deepcopy(judgments)
    edited[key]["score"] = 1.0 - edited[key]["score"]
    assert summarize_method(rows, *args, judgments=edited)["global_judge_acc"] != pytest.approx(want, abs=1e-12)


def test_the_results_table_is_the_summary_and_the_controls():
    summary, cfg, judgments = _summary(), _cfg(), _judgments()
    args = (cfg["eval"]["global_proxy_threshold"], cfg["eval"]["bootstrap_samples"], cfg["seed"])
    table = _table("## Results")
    assert len(table) == len(METHODS) + len(CONTROLS)
    for cells in table:
        name = cells[0]
        if name in CONTROLS:
            row = summarize_method(_rows(CONTROLS[name]), *args, judgments=judgments)
            row = {k: ("" if isinstance(v, float) and v != v else v) for k, v in row.items()}
        else:
            row = summary[NAMES.get(name, name)]
        want = [_pct(row, k) for k in ("passkey_acc", "factual_f1", "global_judge_acc", "global_proxy_acc", "reasoning_judge_acc")]
        assert cells[1:] == want, name


def test_the_paired_gains_recompute():
    table = _table("### Gains, paired on the same questions")
    assert len(table) == 12
    # every gain the prose quotes is a line of the table
    quoted = re.findall(r"([+-]\d+\.\d)(?: points, 95 % CI)? (\[[+-]\d+\.\d, [+-]\d+\.\d\])", README.replace("\n", " "))
    assert len(quoted) >= 10 and set(quoted) <= {(gain, ci) for _, _, gain, ci in table}, set(quoted) - {(g, c) for _, _, g, c in table}
    runfiles.check_paired_gains(RUN, table, NAMES)


def test_the_judge_calibration_table_is_the_committed_calibration():
    cal = json.loads((RUN / "judge_calibration.json").read_text())
    assert cal["judge_model"] == _cfg()["eval"]["judge"]["model"] == "qwen2.5-coder-1.5b-instruct"
    table = {cells[0].split(" ")[0]: cells[1:] for cells in _table("## The judge and its calibration")}
    for qtype, cells in table.items():
        c = cal[qtype]
        want = [str(c["items"]), f"{c['agreement']:.3f}", f"{c['proxy_agreement']:.3f}" if "proxy_agreement" in c else "-",
                f"{c['position_consistency']:.3f}", f"{c['padding_flips']:.3f}"]
        assert cells == want, qtype
        assert c["invalid"] == 0
    # "agrees with the hand labels on 21 of 24 and the proxy on 20 of 24"
    g = cal["global"]
    assert f"on {round(g['agreement'] * g['items'])} of {g['items']} and the proxy on {round(g['proxy_agreement'] * g['items'])} of {g['items']}" in README


def test_the_question_table_is_the_writers_counts_and_the_questions():
    issues = json.loads((RUN / "qa_issues.json").read_text())
    assert issues["llm_qtypes"] == ["factual", "global"] == _cfg()["qa"]["openai"]["qtypes"]
    with gzip.open(RUN / "questions.jsonl.gz", "rt") as f:
        test = [q for q in map(json.loads, f) if q["split"] == "test"]
    table = {cells[0]: cells for cells in _table("## The questions")}
    for qtype in ("factual", "global"):
        c, cells = issues["llm_filters"][qtype], table[qtype]
        assert cells[1] == "LLM"
        assert cells[2:] == [str(c[k]) for k in ("written", "invalid_reply", "failed_evidence_check", "closed_book_leak", "unsupported", "kept")]
        assert c["kept"] == sum(q["qtype"] == qtype and q["backend"] == "openai" for q in test)
        assert c["kept"] == int(_summary()["gist25"][f"{qtype}_{'f1' if qtype == 'factual' else 'judge_acc'}_n"])
    reasoning = [q for q in test if q["qtype"] == "reasoning"]
    assert all(q["backend"] == "grounded" for q in reasoning) and table["reasoning"][-1] == str(len(reasoning))
    assert issues["llm_filters"]["reasoning"]["written"] == 0   # never asked
    assert table["passkey"][-1] == str(len({r["doc_id"] for r in _rows("gist25") if r["qtype"] == "passkey"}))


def test_the_header_figures():
    rows = _rows("gist25")
    ratios = list({r["doc_id"]: r["compression_ratio"] for r in rows}.values())
    assert f"({min(ratios):.0f}-{max(ratios):.0f}x, median {statistics.median(ratios):.0f}x)" in README
    pk = list(csv.DictReader(open(RUN / "passkey_breakdown.csv")))
    assert {float(r["acc"]) for r in pk if r["method"] == "gist25"} == {1.0}
    s = _summary()
    assert f"factual F1 {float(s['gist25']['factual_f1']) * 100:.0f} % against closed book's {float(s['closed_book']['factual_f1']) * 100:.0f} %" in README
    assert re.search(rf"global theme judged \"coherent & complete\" for {float(s['gist25']['global_judge_acc']) * 100:.0f} %", README)
    assert f"full context reaches {float(s['full_context']['global_judge_acc']) * 100:.0f} %, RAG\n{float(s['rag']['global_judge_acc']) * 100:.0f} %" in README
    # training figures: the first and last 50 steps' mean continuation and reconstruction losses of stage 1
    log = list(csv.DictReader(open(RUN / "training/stage1-gist25_train_log.csv")))

    def mean(rs, k):
        return sum(float(r[k]) for r in rs) / len(rs)

    assert f"continuation loss fell from {mean(log[:50], 'next_loss'):.2f} to {mean(log[-50:], 'next_loss'):.2f}" in README.replace("\n", " ")
    assert f"reconstruction loss from {mean(log[:50], 'aux_loss'):.2f} to {mean(log[-50:], 'aux_loss'):.2f}" in README.replace("\n", " ")
    summ = json.loads((RUN / "training/stage1-gist25_summary.json").read_text())
    assert summ["stopped_by"] == "time_limit"
    assert f"({_cfg()['pretrain']['time_limit_minutes']} minutes, {summ['steps']} steps)" in README
    promos = summ["curriculum"]["promotions"]
    assert f"plateau at step {promos[0]['step']}" in README and f"by step {promos[-1]['step']}" in README
