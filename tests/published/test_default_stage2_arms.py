"""bench/results/default_stage2_arms: every figure of its README's table is recomputed from the arms' stored answers
(factual F1, key-like answers, gist-50's paired difference to closed book with its CI), and the table's rows are
the arms stored there; the README's statements about the CIs follow the recomputed numbers."""

from __future__ import annotations

import gzip
import json
import re
from statistics import mean

import pytest

from gistpoc.evaluate.metrics import paired_difference
from gistpoc.evaluate.scoring import keylike_number
from tests.conftest import ROOT

DIR = ROOT / "bench" / "results" / "default_stage2_arms"
README = (DIR / "README.md").read_text()


def rows(arm: str, method: str) -> list[dict]:
    with gzip.open(DIR / arm / f"{method}_predictions.jsonl.gz", "rt") as f:
        return [json.loads(line) for line in f if line.strip()]


def f1_by_id(rs):
    return {r["id"]: r["scores"]["f1"] for r in rs if r["qtype"] == "factual"}


def table() -> dict[str, list[str]]:
    out = {}
    for line in README.splitlines():
        m = re.match(r"\| `(\w+)` \|", line)
        if m:
            out[m.group(1)] = [c.strip() for c in line.strip("|").split("|")]
    return out


def test_the_table_has_every_stored_arm():
    stored = {p.name for p in DIR.iterdir() if p.is_dir()} - {"length_probe"}
    assert set(table()) == stored and len(stored) == 7


@pytest.mark.parametrize("arm", sorted(table()))
def test_each_row_recomputes_from_the_arms_answers(arm):
    cells = table()[arm]
    closed = rows("base", "closed_book")
    for n, cell in zip((10, 25, 50), cells[2:5]):
        rs = rows(arm, f"gist{n}")
        other = [r for r in rs if r["qtype"] != "passkey"]
        f1 = mean(f1_by_id(rs).values())
        keylike = sum(keylike_number(r["prediction"] or "", r["reference"]) for r in other)
        assert cell == f"{f1:.0%} / {keylike:.0f}".replace("%", " %"), (arm, n, cell)
        assert len(other) == 34 and all(r["scores"]["passkey_correct"] == 1.0 for r in rs if r["qtype"] == "passkey")
    rs = rows(arm, "gist50")
    d, lo, hi, k = paired_difference(f1_by_id(rs), f1_by_id(closed), {r["id"]: r["doc_id"] for r in rs})
    assert k == 12

    hi_text = f"{hi * 100:+.0f}"   # "+0" for a bound just above 0, "-0" just below: the side of 0 is the point
    assert cells[5] == f"{d * 100:.0f} % [{lo * 100:.0f}, {hi_text}]", (arm, cells[5], d, lo, hi)


def test_the_closed_book_level_statements_follow_the_cis():
    """"at closed-book level" is said of exactly the arms whose paired CI for gist-50 reaches 0."""
    closed = f1_by_id(rows("base", "closed_book"))
    reach = set()
    for arm in table():
        rs = rows(arm, "gist50")
        _, lo, hi, _ = paired_difference(f1_by_id(rs), closed, {r["id"]: r["doc_id"] for r in rs})
        if lo <= 0 <= hi:
            reach.add(arm)
    assert reach == {"stage1_only", "share0", "share0_lr1e3"}
    assert "`share0` and lr 1e-3 end at closed-book level" in " ".join(README.split())


def test_the_length_probe_figures():
    """The stage-1 adapters on documents cut at 1,024 tokens: each gist's paired difference to closed book and gist-50's
    F1 and key-like count, as the README states them, from length_probe/'s answers."""
    flat = " ".join(README.split())
    closed = [json.loads(line) for line in gzip.open(DIR / "length_probe" / "closed_book_predictions.jsonl.gz", "rt")]
    probe = {}
    for n in (10, 25, 50):
        rs = [json.loads(line) for line in gzip.open(DIR / "length_probe" / f"gist{n}_predictions.jsonl.gz", "rt")]
        d, lo, hi, k = paired_difference(f1_by_id(rs), f1_by_id(closed), {r["id"]: r["doc_id"] for r in rs})
        short = rows("stage1_only", f"gist{n}")
        d0, lo0, hi0, _ = paired_difference(f1_by_id(short), f1_by_id(rows("base", "closed_book")), {r["id"]: r["doc_id"] for r in short})
        assert k == 15 and d > d0
        probe[n] = (rs, f"from {d0 * 100:+.0f} % [{lo0 * 100:.0f}, {hi0 * 100:+.0f}] to {d * 100:+.0f} % [{lo * 100:+.0f}, {hi * 100:+.0f}]")
        assert probe[n][1] in flat, probe[n][1]
    rs = probe[50][0]
    other = [r for r in rs if r["qtype"] != "passkey"]
    keylike = sum(keylike_number(r["prediction"] or "", r["reference"]) for r in other)
    assert f"answers at {mean(f1_by_id(rs).values()):.0%}".replace("%", " %") in flat
    assert f"2 of 34 to {keylike:.0f} of {len(other)}" in flat


def test_where_the_key_like_answers_fall():
    """README: stage 1 alone gives 2 (both factual); base, share0 and share0_recon mostly global; lr 1e-3 all factual."""
    def by_type(arm):
        out = {}
        for r in rows(arm, "gist50"):
            if r["qtype"] != "passkey" and keylike_number(r["prediction"] or "", r["reference"]):
                out[r["qtype"]] = out.get(r["qtype"], 0) + 1
        return out

    assert by_type("stage1_only") == {"factual": 2} and by_type("share0_lr1e3") == {"factual": 4}
    for arm in ("base", "share0", "share0_recon"):
        t = by_type(arm)
        assert t["global"] > sum(t.values()) / 2, (arm, t)
