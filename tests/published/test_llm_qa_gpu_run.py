"""bench/results/qwen_llm_qa_gpu_run (the unfinished GPU run with the first LLM-written test set): every committed
answer re-scores from its text, and the README's tables (the writer's filter counts, the baselines' scores with CIs)
are recomputed from the committed files."""

from __future__ import annotations

import gzip
import json
import re

from gistpoc.evaluate.summary import summarize_method
from tests.conftest import ROOT
from tests.published.test_published_rescoring import _rows, mismatches

RUN = ROOT / "bench" / "results" / "qwen_llm_qa_gpu_run"
README = " ".join((RUN / "README.md").read_text().split())
NAMES = {"closed_book": "closed book", "full_context": "full context", "rag": "RAG"}


def _pct(row, key):
    if row.get(key) is None:
        return "-"
    return f"{100 * row[key]:.0f} % [{100 * row[key + '_lo']:.0f}, {100 * row[key + '_hi']:.0f}]"


def test_every_answer_re_scores_from_its_text():
    files = sorted((RUN / "predictions").glob("*.jsonl.gz"))
    assert len(files) == 8
    bad = {p.name: m for p in files if (m := mismatches(_rows(p)))}
    assert not bad, json.dumps(bad, indent=1)[:2000]


def test_the_baseline_table_is_recomputed_from_the_predictions():
    for path in sorted((RUN / "predictions").glob("*.jsonl.gz")):
        s = summarize_method(_rows(path), 0.5, 1000, 0)
        name = NAMES.get(s["method"], s["method"])
        row = f"| {name} | {_pct(s, 'passkey_acc')} | {_pct(s, 'factual_f1')} | {_pct(s, 'global_proxy_acc')} |"
        assert row in README, row


def test_the_writer_table_matches_the_filter_counts_and_the_questions():
    issues = json.loads((RUN / "qa.issues.json").read_text())
    with gzip.open(RUN / "qa.jsonl.gz", "rt") as f:
        test = [json.loads(line) for line in f if '"split": "test"' in line]
    assert test and all(q["backend"] == "openai" for q in test)   # qa.openai.splits: [test]
    for qtype, c in issues["llm_filters"].items():
        assert c["kept"] == sum(q["qtype"] == qtype for q in test)
        cells = " | ".join(str(c[k]) for k in ("written", "invalid_reply", "failed_evidence_check", "closed_book_leak", "unsupported", "kept"))
        assert f"| {qtype} | {cells} |" in README
    served = sum(1 for line in gzip.open(RUN / "serve.log.gz", "rt") if '"POST /v1/chat/completions' in line)
    assert f"{served} requests" in README
    assert re.search(r"stage 1 was at step (\d+)", README).group(1) in gzip.open(RUN / "pretrain_gist25.log.gz", "rt").read()


def test_the_reasoning_explanation_is_what_the_probe_finds(bench_module):
    """The README's account of the failed reasoning questions, recomputed from the writer's cached replies."""
    out = bench_module("writer_reasoning_probe").probe(str(RUN / "writer_cache.tar.gz"))
    assert out["requests"] == 50 and out.get("both_found_far_enough", 0) == 0
    said = (f"{out['not_json_first_try']} were not JSON on the first try", f"{out['passage_not_in_document']} quoted a passage",
            f"{out['both_found_too_close']} quoted two real passages", f"never more than {out['max_distance_found']} of the")
    for phrase in said:
        assert phrase in README, phrase
    invalid = json.loads((RUN / "qa.issues.json").read_text())["llm_filters"]["reasoning"]["invalid_reply"]
    assert f"re-asked; {invalid} stayed invalid" in README

