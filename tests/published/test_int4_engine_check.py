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

    def same(a, b, m):
        return sum(answers(a, m)[i]["prediction"] == answers(b, m)[i]["prediction"] for i in answers(a, m))

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
    assert f"the mean global similarity was {means['bf16']} in bf16 and {means['int4-fbgemm']} in int4 (NF4 {means['nf4']};" in FLAT


def test_the_gist_adapter_saw_none_of_the_test_documents():
    train = set(json.loads((ROOT / "bench/results/stage1_length_ab/C/summary.json").read_text())["training_documents"])
    test = {r["doc_id"] for r in answers("bf16", "gist16per128").values()}
    assert len(train) == 143 and len(test) == 50 and not train & test
    assert "none of its 143 training documents is among the 50 test documents" in FLAT


def test_the_parting_gaps_table_is_the_gaps_files():
    for name, label in (("gaps_closed_book", "closed book, int4 vs bf16"), ("gaps_nf4_closed_book", "closed book, NF4 vs bf16"),
                        ("gaps_full_context", "full context, int4 vs bf16, passkey and factual only")):
        d = next(iter(json.loads((RUN / f"{name}.json").read_text()).values()))
        gaps = sorted(r["gap_a_b"] for r in d["rows"])
        counts = [sum(g <= t for g in gaps) for t in (0.25, 0.5, 1.0)]
        assert len(gaps) == d["differing"]
        head = f"| {label} (`{name}.json`) | {len(gaps)} | {statistics.median(gaps):.2f} | " + " | ".join(map(str, counts)) + f" | {gaps[-1]:.2f}"
        assert head in README, head
        top = max(d["rows"], key=lambda r: r["gap_a_b"])
        if "re-encoding" in README[README.index(head):].split("\n")[0]:
            assert not top["a_b_are_top2"] and f"next {gaps[-2]:.2f}" in README[README.index(head):].split("\n")[0]
        assert f"| {len(gaps) - d['float32_prefers_b']} |" in README[README.index(head):].split("\n")[0]
    cb = json.loads((RUN / "gaps_closed_book.json").read_text())["closed_book"]
    fc = json.loads((RUN / "gaps_full_context.json").read_text())["full_context"]

    def within(d):
        return sum(r["gap_a_b"] <= 0.25 for r in d["rows"])

    assert f"Only {within(cb)} of {cb['differing']} closed-book partings ({within(fc)} of {fc['differing']} with the full context)" in FLAT
    # every closed-book answer that differs was compared (the table's 157 minus the identical ones)
    assert cb["differing"] == 157 - sum(answers("int4-fbgemm", "closed_book")[i]["prediction"] == r["prediction"]
                                        for i, r in answers("bf16", "closed_book").items())


def test_the_int4_weights_choose_the_partings():
    q = json.loads((RUN / "gaps_closed_book_int4_weights.json").read_text())["closed_book"]
    rows = q["rows"]
    assert q["b_quantization"] == "int4-tinygemm" and q["qtypes"] == ["factual", "passkey"]
    prefer = sum(r["quantized_prefers"] == "b" for r in rows)
    top = sum(r["quantized_top_is_b"] for r in rows)
    assert f"prefer int4-fbgemm's token in {prefer} of {len(rows)} (it is their top token in {top})" in FLAT
    others = [r for r in rows if r["quantized_prefers"] == "a"]
    assert len(others) == 2
    artifact, tie = sorted(others, key=lambda r: -r["gap_a_b"])
    assert not artifact["a_b_are_top2"] and (artifact["a_token"], artifact["b_token"]) == ("if", "ifen")
    assert f"a tie ({tie['gap_a_b']:.2f} logits apart in float32, {tie['quantized_margin_b_over_a']:.2f} with the int4 weights)" in FLAT
    shift = statistics.median(abs(r["margin_shift"]) for r in rows)
    assert f"by a median of {shift:.2f} logits" in FLAT
    explained = [r for r in rows if r["quantized_prefers"] == "b"]
    assert all(abs(r["margin_shift"]) > r["gap_a_b"] for r in explained)   # "more than the float32 gap at every parting it explains"


def test_gpu_results_states_the_check_as_the_files_give_it(tq):
    fc = tq.compare(answers("int4-fbgemm", "full_context"), answers("bf16", "full_context"))
    cb = tq.compare(answers("int4-fbgemm", "closed_book"), answers("bf16", "closed_book"))
    pk = tq.compare(answers("int4-fbgemm", "gist16per128"), answers("bf16", "gist16per128"))["passkey"]
    f = fc["factual"]
    row = DOCS[DOCS.index("| no engine-check quality number moves beyond near-ties |"):]
    row = row[:row.index(" | quality numbers: yes; identical answers and bf16 near-ties: no, nor for NF4 |")]
    assert (f"factual F1 {100 * f['test']:.1f} vs {100 * f['ref']:.1f} % ({signed(f['diff'], 1)} [{signed(f['lo'], 1)}, "
            f"{signed(f['hi'], 1)}]) and {100 * cb['factual']['test']:.1f} vs {100 * cb['factual']['ref']:.1f} %") in row
    assert f"{100 * pk['ref']:.0f} vs {100 * pk['test']:.0f} % through a gist adapter" in row
    assert all(v["lo"] <= 0 <= v["hi"] for d in (fc, cb) for v in d.values()) and "no quality number's paired difference to bf16 excludes 0" in row
    nf4 = {m: tq.compare(answers("nf4", m), answers("bf16", m)) for m in ("closed_book", "full_context")}

    def ident(d):
        return sum(v["identical"] for v in d.values())

    assert f"Answers: {ident(cb)} and {ident(fc)} of 157 identical (NF4: {ident(nf4['closed_book'])} and {ident(nf4['full_context'])})" in row
    q = json.loads((RUN / "gaps_closed_book_int4_weights.json").read_text())["closed_book"]
    g = json.loads((RUN / "gaps_closed_book.json").read_text())["closed_book"]
    n = json.loads((RUN / "gaps_nf4_closed_book.json").read_text())["closed_book"]
    prefer = sum(r["quantized_prefers"] == "b" for r in q["rows"])
    near = sum(r["gap_a_b"] <= 0.25 for r in g["rows"])
    assert f"they choose int4's token at {prefer} of {len(q['rows'])} factual partings" in row and f"({near} of {g['differing']} within two bf16 steps)" in row
    # the section
    sec = DOCS[DOCS.index("### The Qwen engine check in 4 bits, and NF4 beside it"):DOCS.index("The rest of this file is the earlier H100 run")]

    def v(d, q, k="test"):
        return value(d[q][k], q)

    assert (f"| full context: passkey / factual F1 | {v(fc, 'passkey', 'ref')} / {v(fc, 'factual', 'ref')} | "
            f"{v(nf4['full_context'], 'passkey', 'test')} / {v(nf4['full_context'], 'factual', 'test')} | "
            f"{v(fc, 'passkey')} / {v(fc, 'factual')} |") in sec
    assert (f"| full context: global proxy / reasoning similarity | {v(fc, 'global', 'ref')} / {v(fc, 'reasoning', 'ref')} | "
            f"{v(nf4['full_context'], 'global', 'test')} / {v(nf4['full_context'], 'reasoning', 'test')} | "
            f"{v(fc, 'global')} / {v(fc, 'reasoning')} | {signed(fc['global']['diff'], 0)} [{signed(fc['global']['lo'], 0)}, "
            f"{signed(fc['global']['hi'], 0)}] / {signed(fc['reasoning']['diff'], 1)} [{signed(fc['reasoning']['lo'], 1)}, "
            f"{signed(fc['reasoning']['hi'], 1)}] |") in sec
    assert f"| gist adapter, merged (and re-quantised): passkey | {100 * pk['ref']:.0f} % | failed (below) | {100 * pk['test']:.0f} % | {signed(pk['diff'], 0)} [{signed(pk['lo'], 0)}, {signed(pk['hi'], 0)}] |" in sec
    r = nf4["closed_book"]["reasoning"]
    assert f"(closed-book reasoning similarity {signed(r['diff'], 1)} [{signed(r['lo'], 1)}, {signed(r['hi'], 1)}])" in sec

    def med(d):
        return f"{statistics.median(x['gap_a_b'] for x in d['rows']):.2f}"

    assert f"a median {med(g)} logits apart (NF4's {med(n)}), {near} of {g['differing']} within two bf16 steps" in sec
    assert f"moves the margin there by a median of {statistics.median(abs(x['margin_shift']) for x in q['rows']):.2f} logits" in sec


def test_the_unscored_full_context_partings_are_named_as_the_file_has_them():
    rows = sorted(json.loads((RUN / "gaps_full_context.json").read_text())["full_context"]["rows"], key=lambda r: -r["gap_a_b"])
    second, third = rows[1], rows[2]
    assert (second["a_token"], second["b_token"], third["a_token"], third["b_token"]) == (" metres", "7", " when", " includes")
    assert f"({second['gap_a_b']:.2f} and {third['gap_a_b']:.2f} logits in float32" in FLAT
