"""bench/results/stage1_volume_ab/README.md (issue 27: text at volume and the 8x ratio in stage 1): its tables, paired
differences, memory gaps, steps, speeds, loss means and passkey lines are recomputed from the run's files."""

from __future__ import annotations

import csv
import gzip
import json
import statistics

import pytest

from tests.conftest import ROOT

AB = ROOT / "bench/results/stage1_volume_ab"
README = (AB / "README.md").read_text()
FLAT = " ".join(README.split())
LABELS = {"gist16per512@A_s1": "A: 32x, training documents", "gist16per512@V_s1": "V: 32x, + text at volume",
          "gist16per128@C_s1": "C: 8x, + text at volume"}


@pytest.fixture(scope="module")
def table(bench_module):
    return bench_module("recon_ab_table").main(["--heldout", str(AB / "probe_heldout.json"), "--train", str(AB / "probe_train.json"),
                                                "--diff", "V-A", "--diff", "C-V", "--diff", "C-A"])


def fmt(v, pct):
    f = (lambda x: f"{100 * x:.0f}") if pct else (lambda x: f"{x:+.2f}" if x < 0 else f"{x:.2f}")
    return f"{f(v[0])}{' %' if pct else ''} [{f(v[1])}, {f(v[2])}]"


def signed(v):
    return f"{'+' if v[0] >= 0 and f'{v[0]:.2f}' != '0.00' else ''}{v[0]:.2f} [{v[1]:.2f}, {v[2]:.2f}]"


def test_both_tables_are_the_probes(table):
    for probe, heading, nxt in (("held-out", "## Held-out documents (16)", "## Training documents"),
                                ("training", "## Training documents (16", "## What it says")):
        section = README[README.index(heading):README.index(nxt)]
        methods = table[probe]["methods"]
        assert table[probe]["n"] == 16
        for method, v in methods.items():
            label = LABELS.get(method, method)
            cells = [fmt(v["recon_acc"], True)] + [fmt(v[k], False) if k in v else "-" for k in ("reconstruction_gap", "continuation_gap")]
            assert f"| {label} | " + " | ".join(cells) + " |" in section, (probe, method)


def test_the_findings_are_the_tables_numbers(table):
    held, train = table["held-out"], table["training"]
    mem, mem_c = table["memory"], table["memory_continuation"]
    A, V, C = "gist16per512@A_s1", "gist16per512@V_s1", "gist16per128@C_s1"
    assert f"A closes {train['methods'][A]['continuation_gap'][0]:.2f} of the continuation gap" in FLAT
    assert f"it closes {held['methods'][A]['continuation_gap'][0]:.2f}" in FLAT
    assert f"The difference is {fmt(mem_c[A], False)}" in FLAT and f"differs by {fmt(mem[A], True)}" in FLAT
    assert f"V {fmt(mem_c[V], False)} and {fmt(mem[V], True)}" in FLAT
    d = held["diffs"]
    assert (f"continuation gap closed {signed(d['V-A']['continuation_gap'])}, reconstruction gap closed "
            f"{signed(d['V-A']['reconstruction_gap'])}, reconstruction accuracy {fmt(d['V-A']['recon_acc'], True)}") in FLAT
    cv = d["C-V"]
    assert f"reconstruction accuracy is +{fmt(cv['recon_acc'], True)}" in FLAT
    assert f"reconstruction gap closed {signed(cv['reconstruction_gap'])}" in FLAT
    assert f"the continuation gap closed is {fmt(cv['continuation_gap'], False)}" in FLAT
    c_acc, c_gap = held["methods"][C]["recon_acc"][0], held["methods"][C]["reconstruction_gap"][0]
    assert f"reconstruct {100 * c_acc:.0f} % of a span" in FLAT and f"closing {c_gap:.2f} of the gap" in FLAT
    assert f"still leaves {1 - c_gap:.2f} of it" in FLAT
    # the ordering the prose rests on: memory in A only, C above V in reconstruction with intervals clear of zero
    assert mem_c[A][1] > 0 and mem[A][1] > 0 and mem_c[V][1] < 0 < mem_c[V][2]
    assert cv["reconstruction_gap"][1] > 0 and cv["recon_acc"][1] > 0 and d["V-A"]["continuation_gap"][1] > 0


def _log(arm):
    return list(csv.DictReader(open(AB / arm / "train_log.csv")))


def test_steps_speeds_losses_and_passkey_come_from_the_logs():
    steps = {arm: json.loads((AB / arm / "summary.json").read_text())["steps"] for arm in "AVC"}
    assert steps == {arm: len(_log(arm)) for arm in "AVC"}
    assert f"A made {steps['A']:,} steps and V and C made {steps['V']} and {steps['C']}" in FLAT
    speed = {arm: statistics.median(float(r["tokens_per_s"]) for r in _log(arm)[10:]) / 1000 for arm in "AVC"}
    assert f"ran at {min(speed['V'], speed['C']):.0f}-{max(speed['V'], speed['C']):.0f}k tokens/s, against A's {speed['A']:.0f}k" in FLAT

    def aux(arm, lo, hi):
        return statistics.mean(float(r["aux_loss"]) for r in _log(arm)[lo:hi])

    c = _log("C")
    assert f"C: {aux('C', 500, 600):.3f} at steps 501-600, {aux('C', 700, 800):.3f} at 701-800, {aux('C', len(c) - 100, len(c)):.3f}" in FLAT
    v = _log("V")
    assert f"V: {aux('V', 500, 600):.3f}, {aux('V', 700, 800):.3f}, {aux('V', len(v) - 100, len(v)):.3f}" in FLAT
    assert f"A: {aux('A', len(_log('A')) - 100, len(_log('A'))):.3f} over its last 100" in FLAT
    lines = {arm: gzip.open(AB / arm / "train.log.gz", "rt").read() for arm in "AVC"}
    assert "0 texts at volume (740973 tokens" in lines["A"] and "740,973 tokens" in FLAT
    assert all("5966 texts at volume (8744267 tokens" in lines[arm] for arm in "VC") and "8,744,267 tokens" in FLAT
    for arm, at_8k in (("A", "0.000"), ("V", "0.000"), ("C", "1.000")):
        assert "held-out passkey accuracy at 512 tokens: 1.000" in lines[arm]
        assert f"held-out passkey accuracy at 8012 tokens: {at_8k}" in lines[arm], arm
    cfg = {arm: json.loads((AB / arm / "train_cfg.json").read_text()) for arm in "AVC"}
    assert {c_["curriculum"]["heldout_windows"] for c_ in cfg.values()} == {4} and "all 4 held-out windows" in FLAT
    read = steps["V"] * cfg["V"]["batch_size"] * cfg["V"]["curriculum"]["stages"][0]   # window tokens V read
    assert f"V and C read about {read / 1e6:.1f}M window tokens, {read / 8744267:.1f} of one pass over their pool" in FLAT
    assert {c_["time_limit_minutes"] for c_ in cfg.values()} == {7.5} and "7.5 minutes each" in FLAT
    assert all(summary_stop == "time_limit" for summary_stop in
               (json.loads((AB / arm / "summary.json").read_text())["stopped_by"] for arm in "AVC"))
