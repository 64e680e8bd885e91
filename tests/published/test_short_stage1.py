"""bench/results/smollm2_short_stage1 (the shipped SmolLM2 stage-1 adapters remade at the default's lengths): its README's
table and paired differences are recomputed from the stored scored answers, its training figures from the shipped
adapters' logs, and the shipped provenance is this run's."""

from __future__ import annotations

import csv
import gzip
import json
import re
from statistics import mean

import pytest
import yaml

from gistpoc.evaluate.metrics import bootstrap_ci, paired_difference
from tests.conftest import ROOT

DIR = ROOT / "bench/results/smollm2_short_stage1"
README = (DIR / "README.md").read_text()
TEXT = " ".join(README.split())
OLD = ROOT / "bench/results/default_stage2_arms"
SHIPPED = ROOT / "resources/pretrained/smollm2-135m"
THRESHOLD = yaml.safe_load((ROOT / "config.yaml").read_text())["eval"]["global_proxy_threshold"]


def rows(path) -> list[dict]:
    with gzip.open(path, "rt") as f:
        return [json.loads(line) for line in f if line.strip()]


def arm(name: str, method: str) -> list[dict]:
    return rows(DIR / "default_eval" / name / f"{method}_predictions.jsonl.gz")


def f1_by_id(rs):
    return {r["id"]: r["scores"]["f1"] for r in rs if r["qtype"] == "factual"}


def global_by_id(rs):
    return {r["id"]: float(r["scores"]["embed_sim"] >= THRESHOLD) for r in rs if r["qtype"] == "global"}


def pct(x: float, sign: bool = False) -> str:
    return f"{x * 100:+.0f}" if sign else f"{x * 100:.0f}"


def paired(a: list[dict], b: list[dict], by=f1_by_id) -> str:
    """``+8 % [+3, +14]``: a minus b by question (factual F1, or ``by`` another per-question score), paired by document."""
    d, lo, hi, _ = paired_difference(by(a), by(b), {r["id"]: r["doc_id"] for r in a})
    return f"{pct(d, True)} % [{pct(lo, True)}, {pct(hi, True)}]"


def table_rows() -> dict[tuple[str, str], list[str]]:
    out = {}
    for line in README.splitlines():
        m = re.match(r"\| `(\w+)` \| (gist\d+) \|", line)
        if m:
            out[(m.group(1), m.group(2))] = [c.strip() for c in line.strip("|").split("|")][2:]
    return out


def test_the_table_has_both_arms_and_every_gist():
    assert set(table_rows()) == {(a, f"gist{n}") for a in ("with_stage2", "stage1_only") for n in (10, 25, 50)}


@pytest.mark.parametrize("key", sorted(table_rows()))
def test_each_row_recomputes_from_the_stored_answers(key):
    name, method = key
    rs, closed = arm(name, method), arm("with_stage2", "closed_book")
    fact = [r for r in rs if r["qtype"] == "factual"]
    lo, hi = bootstrap_ci([r["scores"]["f1"] for r in fact], [r["doc_id"] for r in fact], 2000, 0)
    other = [r for r in rs if r["qtype"] != "passkey"]
    keys = [r["scores"]["passkey_correct"] for r in rs if r["qtype"] == "passkey"]
    glob = global_by_id(rs).values()
    assert table_rows()[key] == [
        f"{pct(mean(f1_by_id(rs).values()))} % [{pct(lo)}, {pct(hi)}]", paired(rs, closed),
        f"{sum(int(r['scores']['keylike']) for r in other)} of {len(other)}", f"{pct(mean(keys))} %", f"{pct(mean(glob))} %"]
    assert len(fact) == 12 and len(other) == 34 and len(keys) == 16


def test_the_comparisons_in_the_text_recompute():
    new50, s50 = arm("with_stage2", "gist50"), arm("stage1_only", "gist50")
    assert f"gist-50 with stage 2 {paired(new50, rows(OLD / 'share0/gist50_predictions.jsonl.gz'))}" in TEXT
    assert f"alone {paired(s50, rows(OLD / 'stage1_only/gist50_predictions.jsonl.gz'))} for gist-50" in TEXT
    for n in (25, 10):
        old = rows(OLD / f"stage1_only/gist{n}_predictions.jsonl.gz")
        assert f"{paired(arm('stage1_only', f'gist{n}'), old)} for gist-{n}" in TEXT
    assert f"gist-50 minus full context {paired(new50, arm('with_stage2', 'full_context'))}" in TEXT
    diffs = [paired(arm("with_stage2", f"gist{n}"), arm("stage1_only", f"gist{n}")) for n in (10, 25, 50)]
    assert f"is {diffs[0]} for gist-10, {diffs[1]} for gist-25 and {diffs[2]} for gist-50" in TEXT
    with open(ROOT / "bench/results/last_default_controls/gist25_scrambled/predictions.jsonl") as f:
        control = [json.loads(line) for line in f if line.strip()]
    assert f"answers at {pct(mean(f1_by_id(control).values()))} %" in TEXT
    minus = [paired(arm("with_stage2", f"gist{n}"), control) for n in (25, 50)]
    assert f"gist-25 minus control {minus[0]}, gist-50 {minus[1]}" in TEXT


def test_training_figures_come_from_the_shipped_logs():
    losses = next(line for line in README.splitlines() if line.startswith("| answer loss on documents"))
    steps = next(line for line in README.splitlines() if line.startswith("| steps in 5 minutes"))
    for col, n in enumerate((10, 25, 50)):
        log = list(csv.DictReader(open(SHIPPED / f"gist{n}/train_log.csv")))
        prov = json.loads((SHIPPED / f"gist{n}/provenance.json").read_text())
        assert prov["steps"] == len(log) and "config.smollm2-short.yaml" in prov["source_run"]
        assert prov["config"]["curriculum"]["stages"] == [512] and all(h["acc"] == 1.0 for h in prov["heldout_passkey"])
        doc = [r for r in log if r["passkey_microbatches"] == "0"]
        first, last = mean(float(r["loss"]) for r in doc[:50]), mean(float(r["loss"]) for r in doc[-50:])
        assert f"{first:.2f} -> {last:.2f}" == [c.strip() for c in losses.strip("|").split("|")][1 + col]
        assert [c.strip() for c in steps.strip("|").split("|")][1 + col] == f"{len(log):,}"


def test_the_controls_table_recomputes_from_the_stored_answers():
    """The shuffled-document and other-document controls on the default: each row's F1 and global-proxy levels and the
    paired gist-minus-control differences, from the stored answers; both controls find no passkey."""
    lines = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")][1:]
             for line in README.splitlines() if re.match(r"\| gist-\d+ \| \d+ % / ", line)}
    assert set(lines) == {"gist-10", "gist-25", "gist-50"}
    for n in (10, 25, 50):
        g = arm("with_stage2", f"gist{n}")
        s, o = (rows(DIR / "default_eval/controls" / f"gist{n}_{c}_predictions.jsonl.gz") for c in ("scrambled", "otherdoc"))
        assert lines[f"gist-{n}"] == [
            " / ".join(f"{pct(mean(f1_by_id(x).values()))} %" for x in (g, s, o)), paired(g, s), paired(g, o),
            " / ".join(f"{pct(mean(global_by_id(x).values()))} %" for x in (g, s, o)),
            paired(g, s, global_by_id), paired(g, o, global_by_id)]
        for x in (s, o):
            assert [r["scores"]["passkey_correct"] for r in x if r["qtype"] == "passkey"] == [0.0] * 16
