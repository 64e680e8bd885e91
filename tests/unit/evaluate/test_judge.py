"""The judge's rubric requests and its calibration fixture (gistpoc.evaluate.judge; resources/judge/)."""

from __future__ import annotations

from collections import Counter

from gistpoc.evaluate.judge import PADDING, judge_messages
from gistpoc.utils import read_jsonl
from tests.conftest import ROOT

FIXTURE = ROOT / "resources/judge/calibration.jsonl"


def test_the_calibration_fixture_is_hand_labelled_answers_of_several_methods():
    items = read_jsonl(FIXTURE)
    assert len(items) >= 40 and len({it["id"] for it in items}) == len(items)
    by_type = Counter(it["qtype"] for it in items)
    assert by_type["global"] >= 20 and by_type["reasoning"] >= 20
    assert len({it["method"] for it in items}) >= 4
    for it in items:
        assert it["label"] in (("yes", "no") if it["qtype"] == "global" else ("1", "2", "3")), it["id"]
        assert it["question"] and it["reference"] and it["why"]
    # both verdicts and every rating occur, so agreement cannot be reached by one constant answer
    assert {it["label"] for it in items if it["qtype"] == "global"} == {"yes", "no"}
    assert {it["label"] for it in items if it["qtype"] == "reasoning"} == {"1", "2", "3"}


def test_the_fixture_answers_are_the_published_ones():
    """Each labelled answer is the committed prediction it names (a changed run cannot silently keep old labels)."""
    import gzip
    import json

    cache = {}
    for it in read_jsonl(FIXTURE):
        if it["source"] not in cache:
            with gzip.open(ROOT / it["source"], "rt") as f:
                cache[it["source"]] = {r["id"]: r for r in map(json.loads, f)}
        row = cache[it["source"]][it["id"].rsplit("::", 1)[0]]
        assert (row["prediction"], row["reference"], row["question"]) == (it["prediction"], it["reference"], it["question"])


def test_judge_requests_are_blinded_and_the_swap_moves_only_the_candidate():
    item = {"qtype": "reasoning", "question": "Q?", "reference": "R.", "prediction": "P.", "method": "gist25"}
    normal, swapped = judge_messages(item), judge_messages(item, candidate_first=True)
    assert normal[0] == swapped[0] and "3 = correct and complete" in normal[0]["content"]
    assert normal[1]["content"].splitlines() == ["Question: Q?", "Reference answer: R.", "Candidate answer: P."]
    assert swapped[1]["content"].splitlines() == ["Question: Q?", "Candidate answer: P.", "Reference answer: R."]
    assert "gist25" not in str(normal) + str(swapped)
    assert "coherent and complete" in judge_messages({**item, "qtype": "global"})[0]["content"]
    assert PADDING.strip() and not any(ch.isdigit() for ch in PADDING)
