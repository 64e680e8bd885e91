"""bench/results/int4_engine_check/README.md (issue 29: the Qwen engine check in 4 bits): its table, identical-answer
counts, reproduction of the curve run, global similarities and the parting gaps are recomputed from the files, and
docs/gpu_results.md states the same numbers against the target."""

from __future__ import annotations

import json
import statistics

import pytest

from gistpoc.utils import read_jsonl
from tests.conftest import ROOT

RUN = ROOT / "bench/results/int4_engine_check"
README = (RUN / "README.md").read_text()
FLAT = " ".join(README.split())
DOCS = " ".join((ROOT / "docs/gpu_results.md").read_text().split())
CURVE = ROOT / "docs/results/qwen2.5-coder-0.5b-curve/predictions"


def answers(kind: str, method: str) -> dict[str, dict]:
    return {r["id"]: r for r in read_jsonl(RUN / kind / f"{method}.jsonl.gz")}


@pytest.fixture(scope="module")
def tq(bench_module):
    return bench_module("int4_quality_table")


def signed(x: float, digits: int) -> str:
    v = round(100 * x, digits)
    return "0" if v == 0 else f"{v:+.{digits}f}"


def value(x: float, qtype: str) -> str:
    return {"passkey": f"{100 * x:.0f} %", "global": f"{100 * x:.0f} %", "factual": f"{100 * x:.1f} %"}.get(qtype, f"{100 * x:.1f}")


def test_the_table_is_the_answers(tq):
    names = {"passkey": "passkey accuracy", "factual": "factual F1", "global": "global proxy", "reasoning": "reasoning similarity"}
    for method, label in (("closed_book", "closed book"), ("full_context", "full context"), ("gist16per128", "gist16per128 (adapter merged)")):
        test = answers("int4-fbgemm", method)
        vs_bf16 = tq.compare(test, answers("bf16", method))
        vs_nf4 = tq.compare(test, answers("nf4", method)) if (RUN / "nf4" / f"{method}.jsonl.gz").exists() else None
        for qtype, r in vs_bf16.items():
            digits = 0 if qtype in ("passkey", "global") else 1
            nf4 = value(vs_nf4[qtype]["ref"], qtype) if vs_nf4 else "failed"
            row = (f"| {label} | {names[qtype]} | {r['n']} | {value(r['ref'], qtype)} | {nf4} | {value(r['test'], qtype)} | "
                   f"{signed(r['diff'], digits)} [{signed(r['lo'], digits)}, {signed(r['hi'], digits)}] | {r['identical']} |")
            assert row in README, row
            assert r["lo"] <= 0 <= r["hi"], (method, qtype)   # "no quality number moves beyond its CI"
    # the committed table files are this computation
    t = json.loads((RUN / "table.json").read_text())["methods"]
    assert t["full_context"]["bf16"] == json.loads(json.dumps(tq.compare(answers("int4-fbgemm", "full_context"), answers("bf16", "full_context"))))


def test_the_nf4_lines_and_the_identical_counts(tq):
    nf4 = {m: tq.compare(answers("nf4", m), answers("bf16", m)) for m in ("closed_book", "full_context")}
    r = nf4["closed_book"]["reasoning"]
    assert f"closed-book reasoning similarity {signed(r['diff'], 1)} [{signed(r['lo'], 1)}, {signed(r['hi'], 1)}]" in FLAT
    assert r["hi"] < 0   # "the one interval in either table that excludes 0"
    for m, where in (("closed_book", "closed book"), ("full_context", "with the full context")):
        f = nf4[m]["factual"]
        assert f"{signed(f['diff'], 1)} [{signed(f['lo'], 1)}, {signed(f['hi'], 1)}] {where}" in FLAT
    others = [(m, q) for m in nf4 for q, v in nf4[m].items() if "lo" in v and not v["lo"] <= 0 <= v["hi"]]
    assert others == [("closed_book", "reasoning")]
    vs = tq.compare(answers("int4-fbgemm", "closed_book"), answers("nf4", "closed_book"))
    x = vs["reasoning"]
    assert f"int4's closed-book reasoning similarity is {signed(x['diff'], 1)} [{signed(x['lo'], 1)}, {signed(x['hi'], 1)}]" in FLAT
    same = lambda a, b, m: sum(answers(a, m)[i]["prediction"] == answers(b, m)[i]["prediction"] for i in answers(a, m))
    assert (f"int4 gives bf16's answer to {same('int4-fbgemm', 'bf16', 'closed_book')} of 157 questions closed book and "
            f"{same('int4-fbgemm', 'bf16', 'full_context')} of 157 with the full context; NF4 gives it to "
            f"{same('nf4', 'bf16', 'closed_book')} and {same('nf4', 'bf16', 'full_context')}") in FLAT
    pk = answers("int4-fbgemm", "gist16per128")
    assert len(pk) == 50 and same("int4-fbgemm", "bf16", "gist16per128") == 38


def test_the_bf16_pass_reproduces_the_curve_run():
    for m, n in (("full_context", 157), ("closed_book", 152)):
        pub = {r["id"]: r["prediction"] for r in read_jsonl(CURVE / f"{m}.jsonl.gz")}
        new = answers("bf16", m)
        assert len(pub) == len(new) == 157
        assert sum(pub[i] == new[i]["prediction"] for i in new) == n
    assert "in 157 of 157 questions, its closed-book answers in 152 of 157" in FLAT


def test_the_global_proxy_drop_is_two_answers_at_the_threshold():
    sims = {k: {i: r["scores"]["embed_sim"] for i, r in answers(k, "full_context").items() if r["qtype"] == "global"}
            for k in ("bf16", "nf4", "int4-fbgemm")}
    crossed = sorted((round(sims["bf16"][i], 2), round(sims["int4-fbgemm"][i], 2)) for i in sims["bf16"]
                     if sims["bf16"][i] >= 0.5 > sims["int4-fbgemm"][i])
    assert crossed == [(0.57, 0.46), (0.65, 0.42)]
    assert "(similarity 0.65 -> 0.42 and 0.57 -> 0.46)" in FLAT
    means = {k: f"{100 * statistics.mean(v.values()):.1f}" for k, v in sims.items()}
    assert f"the mean global similarity rose from {means['bf16']} to {means['int4-fbgemm']} (NF4 {means['nf4']})" in FLAT


def test_the_gist_adapter_saw_none_of_the_test_documents():
    train = set(json.loads((ROOT / "bench/results/stage1_length_ab/C/summary.json").read_text())["training_documents"])
    test = {r["doc_id"] for r in answers("bf16", "gist16per128").values()}
    assert len(train) == 143 and len(test) == 50 and not train & test
    assert "none of its 143 training documents is among the 50 test documents" in FLAT
