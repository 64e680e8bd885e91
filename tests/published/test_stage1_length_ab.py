"""bench/results/stage1_length_ab/README.md (issue 27: stage 1 at twice the steps, beside session 28's A/B): its
tables, paired differences, memory gaps, steps, speeds, loss means and passkey lines are recomputed from the files."""

from __future__ import annotations

import csv
import gzip
import json
import statistics

import pytest

from tests.conftest import ROOT

RUN = ROOT / "bench/results/stage1_length_ab"
OLD = ROOT / "bench/results/stage1_volume_ab"
README = (RUN / "README.md").read_text()
FLAT = " ".join(README.split())
V, C, V2, C2 = "gist16per512@V_s1", "gist16per128@C_s1", "gist16per512@V2_s1", "gist16per128@C2_s1"


@pytest.fixture(scope="module")
def table(bench_module):
    return bench_module("recon_ab_table").main(["--heldout", str(OLD / "probe_heldout.json"), f"{RUN / 'probe_heldout.json'}:2",
                                                "--train", str(OLD / "probe_train.json"), f"{RUN / 'probe_train.json'}:2",
                                                "--diff", "V2-V", "--diff", "C2-C", "--diff", "C2-V2"])


def fmt(v, pct):
    f = (lambda x: f"{100 * x:.0f}") if pct else (lambda x: f"{x:+.2f}" if x < 0 else f"{x:.2f}")
    return f"{f(v[0])}{' %' if pct else ''} [{f(v[1])}, {f(v[2])}]"


def _log(arm):
    return list(csv.DictReader(open(RUN / arm / "train_log.csv")))


def test_the_tables_are_the_two_runs_probes(table):
    steps = {arm: json.loads((RUN / arm / "summary.json").read_text())["steps"] for arm in "VC"}
    labels = {V: "A/B's V: 32x, + volume, 849 steps", C: "A/B's C: 8x, + volume, 846 steps",
              V2: f"**V2: 32x, + volume, {steps['V']:,} steps**", C2: f"**C2: 8x, + volume, {steps['C']:,} steps**",
              "gist16per512@A_s1": "A/B's A: 32x, training documents, 1,682 steps"}
    for probe, heading, nxt in (("held-out", "## Held-out documents (16)", "## Training documents"),
                                ("training", "## Training documents (16)", "## Paired differences")):
        section = README[README.index(heading):README.index(nxt)]
        assert table[probe]["n"] == 16
        for method, v in table[probe]["methods"].items():
            cells = [fmt(v["recon_acc"], True)] + [fmt(v[k], False) if k in v else "-" for k in ("reconstruction_gap", "continuation_gap")]
            assert f"| {labels.get(method, method)} | " + " | ".join(cells) + " |" in section, (probe, method)
    # the old arms' step counts in the labels are the A/B's own
    assert [json.loads((OLD / a / "summary.json").read_text())["steps"] for a in "AVC"] == [1682, 849, 846]


def test_the_findings_are_the_tables_numbers(table):
    d = table["held-out"]["diffs"]
    for name in ("V2-V", "C2-C", "C2-V2"):
        x = d[name]
        assert (f"{name} (paired): reconstruction accuracy {fmt(x['recon_acc'], True)}, gap closed {fmt(x['reconstruction_gap'], False)}; "
                f"continuation gap closed {fmt(x['continuation_gap'], False)}") in FLAT
    c = d["C2-C"]
    assert (f"add {fmt(c['recon_acc'], True)} of reconstruction accuracy, {fmt(c['reconstruction_gap'], False)} of the reconstruction gap "
            f"and {fmt(c['continuation_gap'], False)} of the continuation gap") in FLAT
    v = d["V2-V"]
    assert (f"V2 - V: reconstruction accuracy {fmt(v['recon_acc'], True)}, reconstruction gap closed {fmt(v['reconstruction_gap'], False)}, "
            f"continuation gap closed {fmt(v['continuation_gap'], False)}") in FLAT
    cv = d["C2-V2"]
    assert f"C2 - V2 is {fmt(cv['recon_acc'], True)} of reconstruction accuracy" in FLAT and f"({fmt(cv['continuation_gap'], False)})" in FLAT
    held = table["held-out"]["methods"]
    assert (f"reconstruct {100 * held[V2]['recon_acc'][0]:.0f} % of a span against {100 * held['none']['recon_acc'][0]:.0f} % with no context "
            f"and {100 * held['full']['recon_acc'][0]:.0f} % reading it") in FLAT
    assert f"bought {c['reconstruction_gap'][0]:.2f} of the reconstruction gap, at 32x {v['reconstruction_gap'][0]:.2f}" in FLAT
    mem, mem_c = table["memory"], table["memory_continuation"]
    assert f"{fmt(mem[V2], True)} for V2 and {fmt(mem[C2], True)} for C2" in FLAT
    assert f"continuation gap closed {fmt(mem_c[V2], False)} and {fmt(mem_c[C2], False)}" in FLAT
    # what the prose rests on: 8x moved with length, clear of zero; 32x barely; no memory in either
    assert c["reconstruction_gap"][1] > 0.05 and v["reconstruction_gap"][2] < c["reconstruction_gap"][1]
    assert mem[V2][1] < 0 < mem[V2][2] and mem[C2][1] < 0 < mem[C2][2]


def test_the_two_probes_share_documents_and_baselines():
    for f in ("probe_heldout.json", "probe_train.json"):
        new, old = (json.loads((d / f).read_text()) for d in (RUN, OLD))
        assert new["documents"] == old["documents"] and new["per_document"]["full"] == old["per_document"]["full"]
        assert new["per_document"]["none"] == old["per_document"]["none"]
    assert "to the last digit" in FLAT


def test_steps_speeds_losses_and_passkey_come_from_the_logs():
    steps = {arm: json.loads((RUN / arm / "summary.json").read_text())["steps"] for arm in "VC"}
    assert steps == {arm: len(_log(arm)) for arm in "VC"}
    assert f"V2 made {steps['V']:,} steps and C2 {steps['C']:,}" in FLAT
    speed = {arm: statistics.median(float(r["tokens_per_s"]) for r in _log(arm)[10:]) / 1000 for arm in "VC"}
    assert f"median of {speed['V']:.1f}k and {speed['C']:.1f}k tokens/s" in FLAT
    cfg = json.loads((RUN / "V" / "train_cfg.json").read_text())
    window_tokens = steps["V"] * cfg["batch_size"] * 512
    assert f"{window_tokens / 1e6:.1f}M window tokens, {window_tokens / 8_744_267:.2f} of one pass" in FLAT
    assert "8,744,267 tokens" in (OLD / "README.md").read_text()   # the pool, as the A/B counted it
    for arm, old_arm in (("C", "C"), ("V", "V")):
        old = list(csv.DictReader(open(OLD / old_arm / "train_log.csv")))
        new = _log(arm)
        last_old = statistics.mean(float(r["aux_loss"]) for r in old[-100:])
        last_new = statistics.mean(float(r["aux_loss"]) for r in new[-100:])
        assert f"from {'the A/B' + chr(39) + 's ' if arm == 'C' else ''}{last_old:.3f} to {last_new:.3f}" in FLAT, arm
    # the train configs differ from the A/B's in the time limit only
    for arm in "VC":
        new, old = (json.loads((d / arm / "train_cfg.json").read_text()) for d in (RUN, OLD))
        assert {k for k in new if new[k] != old.get(k)} == {"time_limit_minutes"} and new["time_limit_minutes"] == 8.0
    for arm, found in (("V", "0.000"), ("C", "0.500")):
        log = gzip.open(RUN / arm / "train.log.gz", "rt").read()
        assert "held-out passkey accuracy at 512 tokens: 1.000" in log and f"held-out passkey accuracy at 8012 tokens: {found}" in log
    assert "C2 finds 2 of 4" in FLAT and "V2 0 of 4" in FLAT and "in 4 of 4 held-out windows at 512 tokens" in FLAT


def test_the_curve_readme_paragraph_is_this_run(table):
    """docs/results/qwen2.5-coder-0.5b-curve/README.md's fifth probe: every number is this run's table or log."""
    text = (ROOT / "docs/results/qwen2.5-coder-0.5b-curve/README.md").read_text()
    para = " ".join(text[text.index("The fifth probe"):text.index("## Against the issue's targets")].split())
    held, d, mem = table["held-out"]["methods"], table["held-out"]["diffs"], table["memory"]
    steps = {arm: json.loads((RUN / arm / "summary.json").read_text())["steps"] for arm in "VC"}
    assert f"({steps['V']:,} and {steps['C']:,} instead of 849 and 846)" in para
    for name, old, new in (("C2-C", C, C2), ("V2-V", V, V2)):
        x = d[name]
        assert f"add {fmt(x['recon_acc'], True)} of {'held-out ' if name == 'C2-C' else ''}reconstruction accuracy " \
               f"({100 * held[old]['recon_acc'][0]:.0f} to {100 * held[new]['recon_acc'][0]:.0f} %), " \
               f"{fmt(x['reconstruction_gap'], False)} of the reconstruction gap and {fmt(x['continuation_gap'], False)} of the continuation gap" in para, name
    old_v = list(csv.DictReader(open(OLD / "V" / "train_log.csv")))
    loss = [statistics.mean(float(r["aux_loss"]) for r in rows[-100:]) for rows in (old_v, _log("V"))]
    assert f"fell from {loss[0]:.3f} to {loss[1]:.3f}" in para
    assert f"held-out accuracy {fmt(mem[V2], True)} and {fmt(mem[C2], True)}" in para
    window_tokens = steps["V"] * json.loads((RUN / "V" / "train_cfg.json").read_text())["batch_size"] * 512
    assert f"than {window_tokens / 1e6:.1f}M window tokens" in para
