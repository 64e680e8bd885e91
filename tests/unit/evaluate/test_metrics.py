"""Metric functions against hand-computed cases."""

import math

import pytest

from gistpoc.evaluate.metrics import bootstrap_ci, exact_match, normalize_answer, passkey_correct, quantile, rouge_l, token_f1


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The Cat!", "cat"),
        ("  a  b   the c ", "b c"),
        ("An apple, an orange.", "apple orange"),
        ("Theory of the atom", "theory of atom"),   # 'the' inside words is kept
        ("", ""),
        ("U.S.A.", "usa"),
    ],
)
def test_squad_normalisation(text, expected):
    assert normalize_answer(text) == expected


def test_exact_match_and_f1_by_hand():
    assert exact_match("The Eiffel Tower.", "eiffel tower") == 1.0
    assert exact_match("Eiffel", "eiffel tower") == 0.0
    # pred tokens [eiffel, tower, paris], ref [eiffel, tower]: P=2/3 R=1 F1=0.8
    assert token_f1("the Eiffel Tower in Paris", "Eiffel Tower") == pytest.approx(2 / 3)  # P=2/4, R=1
    assert token_f1("Eiffel Tower Paris", "Eiffel Tower") == pytest.approx(0.8)
    assert token_f1("nothing shared", "Eiffel Tower") == 0.0
    assert token_f1("", "") == 1.0 and token_f1("a", "") == 1.0 and token_f1("cat", "") == 0.0  # "a" normalises to empty
    assert token_f1("x x y", "x y y") == pytest.approx(2 / 3)       # multiset overlap counts 1 x + 1 y


def test_passkey_exact():
    assert passkey_correct("The passkey is 12345.", "12345") == 1.0
    assert passkey_correct("123456", "12345") == 0.0
    assert passkey_correct("It is 1234 or 12345", "12345") == 0.0   # first number must be the key
    assert passkey_correct("no digits", "12345") == 0.0 and passkey_correct(None, "12345") == 0.0


def test_rouge_l():
    assert rouge_l("a b c d", "a b c d") == 1.0
    # tokens: [police, killed, gunman] vs [police, kill, gunman]: LCS 2 -> P=R=2/3
    assert rouge_l("police killed the gunman", "police kill the gunman") == pytest.approx(2 / 3)
    assert rouge_l("", "x") == 0.0


def test_bootstrap_resamples_documents():
    values = [1, 1, 1, 0, 0, 0]
    groups = ["a", "a", "a", "b", "b", "b"]
    lo, hi = bootstrap_ci(values, groups, n_samples=400, seed=1)
    assert lo == 0.0 and hi == 1.0   # whole documents move together: means are 0, 0.5 or 1
    lo2, hi2 = bootstrap_ci([1.0] * 5, list("abcde"), 100)
    assert lo2 == hi2 == 1.0
    assert all(math.isnan(x) for x in bootstrap_ci([], [], 10))


def test_quantile():
    assert quantile([1, 2, 3, 4, 5], 0.5) == 3 and quantile([1, 2], 0.9) == pytest.approx(1.9)


def test_criteria_do_not_pass_on_an_uninformative_baseline():
    """A gist/full-context ratio is N/A when full context is not clearly better than closed book."""
    from gistpoc.report.criteria import checks

    base = {"n_items": 4, "n_oom": 0}
    summary = [
        {**base, "method": "closed_book", "factual_f1": 0.08},
        {**base, "method": "full_context", "factual_f1": 0.083, "factual_f1_lo": 0.0},
        {**base, "method": "gist25", "factual_f1": 0.083, "passkey_acc": 0.75},
    ]
    got = {c["check"]: c for c in checks(summary, on_gpu=False)}
    assert got["gist25 factual F1 vs full context"]["verdict"] == "N/A"
    assert got["gist25 passkey accuracy"]["verdict"] == "PASS"
    summary[1].update(factual_f1=0.6, factual_f1_lo=0.4)
    got = {c["check"]: c for c in checks(summary, on_gpu=False)}
    assert got["gist25 factual F1 vs full context"]["verdict"] == "FAIL"   # 0.083 / 0.6 = 14%


def test_criteria_never_compare_timings_measured_on_different_machines():
    """A gist row measured on a CPU against a RAG row measured on a GPU is N/A, not a FAIL or a PASS."""
    from gistpoc.report.criteria import checks

    base = {"n_items": 4, "n_oom": 0, "decode_tokens_per_s_median": 20.0, "peak_mem_bytes_median": 2**30}
    summary = [
        {**base, "method": "full_context", "mem_kind": "cuda_max_allocated", "ttft_ms_median": 100.0},
        {**base, "method": "rag", "mem_kind": "cuda_max_allocated", "ttft_ms_median": 60.0},
        {**base, "method": "gist25", "mem_kind": "cpu_rss", "ttft_ms_median": 10.0},
    ]
    got = {c["check"]: c for c in checks(summary, on_gpu=True)}
    for name in ("gist25 TTFT vs RAG", "gist25 throughput vs full context", "2. Speed: gist25 TTFT >= 30% faster than RAG",
                 "1. Memory: gist25 <= RAG (and <= 10 GB on GPU)", "KV cache: full context / gist25 gist cache"):
        assert got[name]["verdict"] == "N/A" and "not comparable" in got[name]["note"], name
    summary[2]["mem_kind"] = "cuda_max_allocated"
    got = {c["check"]: c for c in checks(summary, on_gpu=True)}
    assert got["gist25 TTFT vs RAG"]["verdict"] == "PASS"            # 10 / 60 ms, same kind of machine


def test_paired_difference_keeps_the_pairing_and_resamples_documents():
    from gistpoc.evaluate.metrics import paired_difference

    a = {"q1": 1.0, "q2": 0.5, "q3": 0.0, "q4": None, "q5": 1.0}
    b = {"q1": 0.0, "q2": 0.5, "q3": 0.0, "q4": 1.0}            # q4: a has no score, q5: b has none -> both left out
    docs = {"q1": "d1", "q2": "d1", "q3": "d2", "q4": "d3", "q5": "d3"}
    mean, lo, hi, n = paired_difference(a, b, docs, 500, 0)
    assert n == 3 and mean == pytest.approx(1 / 3)
    assert lo == pytest.approx(0.0) and hi == pytest.approx(0.5)   # d1 alone: 0.5, d2 alone: 0.0
    # a constant gain has a zero-width interval, however the documents are drawn; two unpaired CIs would not show it
    shifted = {k: v + 0.25 for k, v in b.items()}
    assert paired_difference(shifted, b, docs, 200, 1)[1:3] == pytest.approx((0.25, 0.25))
    assert paired_difference({}, b, docs)[3] == 0


def test_a_key_like_number_is_flagged_only_where_the_reference_lacks_it():
    """Issue 27's failure mode: a gist that answers a factual question with a five-digit number learned the passkey task
    only. A number the reference holds, a year, or a longer number is not that."""
    from gistpoc.evaluate.scoring import keylike_number, score

    assert keylike_number("The 80000 is a 10000,", "The Dvorak technique ...") == 1.0
    assert keylike_number("70851", "a 1999 American drama film") == 1.0
    assert keylike_number("It has 70851 residents.", "70851 residents") == 0.0
    assert keylike_number("In 1948, and 123456 times", "x") == 0.0
    assert keylike_number("code 1234", "x", digits=4) == 1.0
    assert score({"answer": "38702", "qtype": "passkey"}, "38702")["keylike"] is None
    assert score({"answer": "a film", "qtype": "global"}, "38702")["keylike"] == 1.0
    assert score({"answer": "a film", "qtype": "factual"}, None)["keylike"] is None


def test_the_key_like_rate_is_a_summary_column_and_a_failure_mode_check():
    from gistpoc.evaluate.summary import summarize_method
    from gistpoc.report.criteria import checks

    def row(i, qtype, keylike):
        return {"method": "gist50", "id": f"q{i}", "doc_id": f"d{i}", "qtype": qtype, "status": "ok",
                "scores": {"keylike": keylike, "passkey_correct": 1.0 if qtype == "passkey" else None}}

    rows = [row(0, "passkey", None), row(1, "factual", 1.0), row(2, "global", 0.0), row(3, "reasoning", 0.0), row(4, "factual", 1.0)]
    s = summarize_method(rows, threshold=0.5, n_boot=50, seed=0)
    assert s["keylike_rate"] == 0.5 and s["keylike_rate_n"] == 4
    got = {c["check"]: c for c in checks([s], on_gpu=False)}
    check = got["gist50 answers to factual / global / reasoning questions holding a passkey-like number"]
    assert check["verdict"] == "FAIL" and check["measured"] == "50% of 4" and check["section"] == "7"
    s = summarize_method([r for r in rows if r["scores"]["keylike"] != 1.0], threshold=0.5, n_boot=50, seed=0)
    assert {c["check"]: c for c in checks([s], on_gpu=False)}[check["check"]]["verdict"] == "PASS"
    for r in rows:   # answers scored before the metric existed: no column, and no check
        r["scores"].pop("keylike")
    s = summarize_method(rows, threshold=0.5, n_boot=50, seed=0)
    assert "keylike_rate" not in s and check["check"] not in {c["check"] for c in checks([s], on_gpu=False)}
