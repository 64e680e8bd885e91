"""docs/results/qwen2.5-coder-0.5b-curve: the quality-versus-compression-ratio run (issue 27). Every figure its README
states is recomputed here from the committed files: summary.csv from the predictions and the judgments, the README's
tables from summary.csv, the paired gains, the training figures, the judge's calibration and the probe's table."""

from __future__ import annotations

import json
import re
import statistics

import pytest
import yaml

from gistpoc.evaluate.summary import summarize_method
from gistpoc.methods import parse
from tests.conftest import ROOT
from tests.published import runfiles
from tests.published.test_published_results import recomputes_from_predictions

RUN = ROOT / "docs" / "results" / "qwen2.5-coder-0.5b-curve"
PROBE = ROOT / "bench" / "results" / "gist_content_probe_qwen_curve.json"
README = (RUN / "README.md").read_text()
FLAT = " ".join(README.split())
METHODS = ["closed_book", "full_context", "rag", "gist25", "gist16per256", "gist16per512", "gist16per1024", "truncate_head25",
           "truncate_tail25", "kv_select25", "mean_pool25", "ppl_select25"]
NAMES = {"closed book": "closed_book", "full context": "full_context", "RAG": "rag", "gist-25": "gist25",
         "control: gist16per512 of another test document": "control-gist16per512_otherdoc",
         "control: gist16per512 of the token-shuffled document": "control-gist16per512_scrambled",
         "control: gist-25 of another test document": "control-gist25_otherdoc",
         "control: gist-25 of the token-shuffled document": "control-gist25_scrambled",
         "gist16per512 of another document": "control-gist16per512_otherdoc",
         "gist16per512 of the shuffled document": "control-gist16per512_scrambled",
         "gist-25 of another document": "control-gist25_otherdoc", "gist-25 of the shuffled document": "control-gist25_scrambled"}


def _cfg() -> dict:
    return yaml.safe_load((RUN / "config.yaml").read_text())


def _row(name: str) -> dict:
    """A method's summary row, or a control's summary computed from its predictions as the report does."""
    key = NAMES.get(name, name)
    if key.startswith("control-"):
        cfg = _cfg()
        row = summarize_method(runfiles.rows(RUN, key), cfg["eval"]["global_proxy_threshold"], cfg["eval"]["bootstrap_samples"],
                               cfg["seed"], judgments=runfiles.judgments(RUN))
        return {k: ("" if isinstance(v, float) and v != v else v) for k, v in row.items()}
    return runfiles.summary(RUN)[key]


def test_the_run_is_the_chunk_wise_config():
    cfg = _cfg()
    assert cfg["gist"]["chunked"] == {"n": 16, "chunk_tokens": [256, 512, 1024]} and cfg["gist"]["n_tokens"] == [25]
    assert cfg["eval"]["judge"]["qtypes"] == ["global"]
    assert sorted(p.name for p in (RUN / "predictions").iterdir()) == sorted(
        [f"{m}.jsonl.gz" for m in METHODS] + [f"{c}.jsonl.gz" for c in set(NAMES.values()) if c.startswith("control-")])


def test_summary_recomputes_from_the_predictions_and_the_judgments(tmp_path):
    recomputes_from_predictions(RUN, METHODS, tmp_path)


def test_the_results_table_is_the_summary_and_the_controls():
    table = runfiles.table(README, "## Results")
    assert len(table) == len(METHODS) + 4
    for cells in table:
        row = _row(cells[0])
        ratio = f"{float(row['compression_ratio_median']):.0f}x" if row.get("compression_ratio_median") not in (None, "") else "-"
        want = [ratio] + [runfiles.pct(row, k) for k in ("passkey_acc", "factual_f1", "global_judge_acc", "global_proxy_acc")]
        assert cells[1:] == want, cells[0]


def test_the_paired_gains_recompute_and_the_prose_quotes_only_them():
    table = runfiles.table(README, "### Gains, paired on the same questions")
    assert len(table) == 19
    quoted = re.findall(r"([+-]\d+\.\d),? (?:95 % CI )?(\[[+-]\d+\.\d, [+-]\d+\.\d\])", FLAT)
    assert len(quoted) >= 6 and set(quoted) <= {(gain, ci) for _, _, gain, ci in table}, set(quoted) - {(g, c) for _, _, g, c in table}
    runfiles.check_paired_gains(RUN, table, NAMES)


def test_the_header_and_the_prose_figures():
    s = runfiles.summary(RUN)

    def p(method, key):
        return f"{float(s[method][key]) * 100:.0f} %"

    assert (f"give factual F1 {p('gist16per256', 'factual_f1')}, {p('gist16per512', 'factual_f1')} and {p('gist16per1024', 'factual_f1')}, "
            f"and 25 gist tokens for the whole document ({float(s['gist25']['compression_ratio_median']):.0f}x) {p('gist25', 'factual_f1')}, "
            f"where full context gives {p('full_context', 'factual_f1')} and closed book {p('closed_book', 'factual_f1')}") in FLAT
    per = sorted(round(float(s[m]["global_judge_acc"]) * 100) for m in ("gist16per256", "gist16per512", "gist16per1024"))
    assert f"for {per[0]}-{per[-1]} % of documents through the chunk-wise gists and {p('gist25', 'global_judge_acc')} through gist-25" in FLAT
    assert (f"against full context's {p('full_context', 'global_judge_acc')}, RAG's {p('rag', 'global_judge_acc')} and "
            f"{p('truncate_head25', 'global_judge_acc')} for the document's first 25 tokens") in FLAT
    ratios = [f"{float(s[m]['compression_ratio_median']):.0f}x" for m in ("gist16per256", "gist16per512", "gist16per1024")]
    assert f"({', '.join(ratios[:2])}, {ratios[2]})" in FLAT
    # KV held and TTFT
    kv = {m: statistics.median({r["doc_id"]: r["gist_kv_bytes"] for r in runfiles.rows(RUN, m)}.values()) / 2**20
          for m in ("gist16per256", "gist25")}
    assert f"{kv['gist16per256']:.1f} MiB of KV at 16x on these documents against {kv['gist25']:.1f} MiB for gist-25" in FLAT
    ttft = [f"{float(s[m]['ttft_ms_median']):.1f}" for m in ("gist16per256", "gist16per512", "gist16per1024", "gist25", "full_context", "rag")]
    assert f"TTFT median {ttft[0]} / {ttft[1]} / {ttft[2]} ms against {ttft[3]} ms; full context {ttft[4]} ms, RAG {ttft[5]} ms" in FLAT
    assert all(float(r["acc"]) == 1.0 for r in runfiles.passkey_rows(RUN) if "gist" in r["method"])
    assert f"gist-25's global score in this run ({p('gist25', 'global_judge_acc')})" in FLAT


def test_the_training_figures():
    def summ(name):
        return json.loads((RUN / "training" / f"{name}_summary.json").read_text())

    s1, s1c, s2, s2c = summ("stage1-gist25"), summ("stage1-gist16chunked"), summ("gist25"), summ("gist16chunked")
    assert s1c["chunk_tokens"] == s2c["chunk_tokens"] == [256, 512, 1024] and s1["chunk_tokens"] == []
    assert f"{_cfg()['pretrain']['time_limit_minutes']}-minute limit" in FLAT
    assert s1["curriculum"]["final_gate_step"] == s1["steps"] and f"({s1['curriculum']['stages'][-1]:,} tokens) at step {s1['steps']}" in FLAT
    last = s1c["curriculum"]["promotions"][-1]
    assert last["step"] == s1c["steps"] and f"reached the {last['to']:,}-token stage at step {last['step']}" in FLAT
    assert s2["resumed_from_step"] == 50 and "after step 50" in FLAT and "step-50 state" in FLAT
    assert {s2["stopped_by"], s2c["stopped_by"]} == {"time_limit"}
    assert f"{s2c['steps']} and {s2['steps']} steps of the {s2['max_steps']} asked, in {_cfg()['train']['time_limit_minutes']} minutes" in FLAT


def test_the_judge_calibration_table_is_the_committed_calibration():
    cal = json.loads((RUN / "judge_calibration.json").read_text())
    assert cal["judge_model"] == _cfg()["eval"]["judge"]["model"] == "qwen2.5-coder-1.5b-instruct"
    table = {cells[0]: cells[1:] for cells in runfiles.table(README, "## The judge and its calibration")}
    for qtype, cells in table.items():
        c = cal[qtype]
        assert cells == [str(c["items"]), f"{c['agreement']:.3f}", f"{c['proxy_agreement']:.3f}" if "proxy_agreement" in c else "-",
                         f"{c['position_consistency']:.3f}", f"{c['padding_flips']:.3f}"], qtype


def test_the_probe_table_is_the_committed_probe():
    probe = json.loads(PROBE.read_text())
    assert probe["args"]["dataset"].endswith("test.gist16.jsonl") and len(probe["documents"]) == probe["args"]["docs"]
    table = runfiles.table(README, "## Why the curve is flat")
    rows = {r["method"]: r for r in probe["rows"]}
    assert [c[0] for c in table] == list(rows)
    for cells in table:
        r = rows[cells[0]]
        want = [f"{r['ratio']:.0f}x" if "ratio" in r else "-"]
        for kind in ("continuation", "reconstruction"):
            want += [f"{r[f'{kind}_nll']:.2f}", f"{r[f'{kind}_acc'] * 100:.0f} %", f"{r[f'{kind}_gap_closed']:.2f}"]
        assert cells[1:] == want, cells[0]


@pytest.mark.parametrize("method", ["gist16per256", "gist16per512", "gist16per1024"])
def test_a_chunk_wise_row_holds_16_positions_per_chunk(method):
    """The answers' own record of the layout: KV bytes per document = 16 x chunks x bytes per position, the ratio =
    context tokens / (16 x chunks)."""
    chunk = parse(method).chunk
    per_position = {r["gist_kv_bytes"] / 25 for r in runfiles.rows(RUN, "gist25")}
    assert len(per_position) == 1
    for r in runfiles.rows(RUN, method):
        positions = 16 * -(-r["context_tokens"] // chunk)
        assert r["compression_ratio"] == pytest.approx(r["context_tokens"] / positions)
        assert r["gist_kv_bytes"] == positions * per_position.copy().pop()


def test_the_probe_reading_and_the_stage_1_losses():
    """The prose under the probe's table: the ranges it quotes, and stage 1's first and last 50 steps' losses."""
    import csv

    rows = [r for r in json.loads(PROBE.read_text())["rows"] if "ratio" in r]
    by = {r["method"]: r for r in json.loads(PROBE.read_text())["rows"]}
    cg, rg = sorted(r["continuation_gap_closed"] for r in rows), sorted(r["reconstruction_gap_closed"] for r in rows)
    acc = sorted(round(r["reconstruction_acc"] * 100) for r in rows)
    assert f"{cg[0]:.2f}-{cg[-1]:.2f} of the continuation gap and {rg[0]:.2f}-{rg[-1]:.2f} of the reconstruction gap" in FLAT
    assert (f"they get {acc[0]}-{acc[-1]} % of its tokens right, against {by['none']['reconstruction_acc'] * 100:.0f} % with no context "
            f"and {by['full']['reconstruction_acc'] * 100:.0f} % reading the text") in FLAT
    assert f"at {acc[0]}-{acc[-1]} % token accuracy whatever the ratio (16x to {max(r['ratio'] for r in rows):.0f}x)" in FLAT

    def mean(name, key, part):
        log = list(csv.DictReader(open(RUN / "training" / f"{name}_train_log.csv")))
        rs = log[:50] if part == "first" else log[-50:]
        return f"{sum(float(r[key]) for r in rs) / len(rs):.2f}"

    c, g = "stage1-gist16chunked", "stage1-gist25"
    assert (f"the reconstruction loss fell only from {mean(c, 'aux_loss', 'first')} to {mean(c, 'aux_loss', 'last')} nats per token for "
            f"`gist16chunked` and from {mean(g, 'aux_loss', 'first')} to {mean(g, 'aux_loss', 'last')} for gist-25, the continuation loss "
            f"from {mean(c, 'next_loss', 'first')} to {mean(c, 'next_loss', 'last')} and from {mean(g, 'next_loss', 'first')} to "
            f"{mean(g, 'next_loss', 'last')}") in FLAT
    # "no paired difference between them reaches 3 points": the chunk-wise gists against gist-25 and each other
    gains = [float(g) for what, _, g, _ in runfiles.table(README, "### Gains, paired on the same questions")
             if what.startswith("factual F1: gist16per") and ("gist-25" in what or "gist16per1024" in what.split(" - ")[1])]
    assert len(gains) == 4 and max(abs(x) for x in gains) < 3


def test_the_reconstruction_density_a_b_it_quotes():
    """The paragraph on bench/results/recon_density_ab: its accuracies, steps and passkey come from the A/B's files, and
    the A/B differs from itself only in train.aux.cue_every_tokens."""
    ab = ROOT / "bench" / "results" / "recon_density_ab"
    rows = {r["method"]: r for r in json.loads((ab / "probe.json").read_text())["rows"]}
    arms = [rows["gist16per512@A"], rows["gist16per512@B"]]
    assert {round(r["reconstruction_acc"] * 100) for r in arms} == {37}
    steps = sorted(json.loads((ab / arm / "summary.json").read_text())["steps"] for arm in "AB")
    assert f"reconstruction at 37 % in both arms after {steps[0]}-{steps[1]} steps, against {rows['none']['reconstruction_acc'] * 100:.0f} % with no context" in FLAT
    for arm in "AB":
        assert all(line.endswith(",0.0") for line in (ab / arm / "eval_log.csv").read_text().splitlines() if "passkey_acc" in line)
    a, b = (json.loads((ab / arm / "train_cfg.json").read_text()) for arm in "AB")
    assert (a["aux"].pop("cue_every_tokens"), b["aux"].pop("cue_every_tokens")) == (0, 512) and a == b
    assert a["curriculum"]["stages"] == [2048] and "four pairs per 2,048-token window instead of one" in FLAT


def test_the_reconstruction_density_a_b_readme_table():
    """bench/results/recon_density_ab/README.md: its table is the A/B's probe, steps and the curve run's probe."""
    ab = ROOT / "bench" / "results" / "recon_density_ab"
    text = (ab / "README.md").read_text()
    rows = {r["method"]: r for r in json.loads((ab / "probe.json").read_text())["rows"]}
    curve = {r["method"]: r for r in json.loads(PROBE.read_text())["rows"]}
    steps = {arm: json.loads((ab / arm / "summary.json").read_text())["steps"] for arm in "AB"}

    def cells(r):
        return [f"{r['continuation_gap_closed']:.2f}", f"{r['reconstruction_acc'] * 100:.0f} %", f"{r['reconstruction_gap_closed']:.2f}"]

    table = runfiles.table(text, "# Does a denser reconstruction objective")
    assert table[0][2:] == cells(rows["none"]) and table[3][2:] == cells(rows["full"])
    assert table[1][1:] == [str(steps["A"])] + cells(rows["gist16per512@A"])
    assert table[2][1:] == [str(steps["B"])] + cells(rows["gist16per512@B"])
    assert table[4][2:] == cells(curve["gist16per512"])


def test_where_the_curve_run_left_the_plateau():
    """The A/B README's comparison: the first held-out passkey check above 0 in the curve run's two stage 1s."""
    import csv

    def first_read(name):
        rows = csv.DictReader(open(RUN / "training" / f"stage1-{name}_eval_log.csv"))
        return min(int(r["step"]) for r in rows if r["kind"] == "passkey_acc" and float(r["value"]) > 0)

    text = " ".join((ROOT / "bench" / "results" / "recon_density_ab" / "README.md").read_text().split())
    assert (f"had left it by step {first_read('gist25')} (gist-25) and step {first_read('gist16chunked')} (the chunk-wise "
            f"checkpoint; 0 % at step {first_read('gist16chunked') - 50})") in text


def test_the_one_chunk_window_run_readme_table():
    """bench/results/stage1_one_chunk_windows/README.md: its table is the probe's printed table, the steps and held-out
    passkey of the arms' logs, and the arms differ in window length and batch split only."""
    import csv

    d = ROOT / "bench" / "results" / "stage1_one_chunk_windows"
    text = (d / "README.md").read_text()
    probe = {line.split()[0]: line.split() for line in (d / "probe_s1.txt").read_text().splitlines()[1:]}

    def cells(name):
        cont_gap, acc, rec_gap = probe[name][4], probe[name][6], probe[name][7]
        return [cont_gap, f"{float(acc) * 100:.0f} %", rec_gap]

    a_steps = max(int(m) for m in re.findall(r"step (\d+)/4000", (d / "A" / "train.log").read_text()))
    b_summary = json.loads((d / "B" / "summary.json").read_text())
    assert "held-out passkey accuracy 1.000 at 512 tokens" in (d / "A" / "train.log").read_text().splitlines()[-1]
    assert {r["acc"] for r in b_summary["heldout_passkey"]} == {0.0}
    table = runfiles.table(text, "# Does stage 1 on one-chunk windows")
    assert table[0][3:] == cells("none") and table[3][3:] == cells("full")
    assert table[1][1:] == [f"{a_steps:,}", "100 % (4 of 4)"] + cells("gist16per512@A_s1")
    assert table[2][1:] == [f"{b_summary['steps']:,}", "0 %"] + cells("gist16per512@B_s1")
    a, b = (json.loads((d / arm / "train_cfg.json").read_text()) for arm in "AB")
    assert b == b_summary["config"]
    assert (a.pop("batch_size"), a.pop("grad_accum"), b.pop("batch_size"), b.pop("grad_accum")) == (8, 1, 4, 2)
    assert a["curriculum"].pop("stages") == [512] and b["curriculum"].pop("stages") == [2048] and a == b
    rows = list(csv.DictReader(open(d / "B" / "train_log.csv")))

    def mean(lo, hi, key):
        return statistics.mean(float(r[key]) for r in rows if lo <= int(r["step"]) <= hi)

    flat = " ".join(text.split())
    assert f"(answer loss {mean(474, 498, 'loss'):.2f} over steps 474-498" in flat
    assert f"fell to {mean(474, 498, 'aux_loss'):.2f} nats per token" in flat and f"{mean(76, 100, 'aux_loss'):.2f} at steps 76-100" in flat
    # the curve run's README quotes the same numbers
    assert (f"reached 100 % held-out passkey after {a_steps:,} steps, yet its gists reconstruct "
            f"{float(probe['gist16per512@A_s1'][6]) * 100:.0f} % of held-out spans (gap closed {probe['gist16per512@A_s1'][7]})") in FLAT
    pool = int(re.search(r"\((\d+) tokens of passkey-window text\)", (d / "A" / "train.log").read_text()).group(1))
    passes = [round(a_steps * 8 * 512 / pool), round(b_summary["steps"] * 8 * 2048 / pool)]
    assert passes == [9, 11] and f"read its {pool / 1e6:.2f}M tokens of training documents nine to eleven times over" in FLAT
    assert "about nine and eleven passes over the same text" in " ".join(text.split())


def test_the_volume_and_ratio_a_b_it_quotes(bench_module):
    """The paragraph on bench/results/stage1_volume_ab: every number is that A/B's table (its own README is checked in
    tests/published/test_stage1_volume_ab.py)."""
    ab = ROOT / "bench" / "results" / "stage1_volume_ab"
    t = bench_module("recon_ab_table").main(["--heldout", str(ab / "probe_heldout.json"), "--train", str(ab / "probe_train.json"),
                                             "--diff", "V-A", "--diff", "C-V"])
    held, train = t["held-out"], t["training"]
    A, V, C = "gist16per512@A_s1", "gist16per512@V_s1", "gist16per128@C_s1"
    assert (f"On documents it trained on it closes {train['methods'][A]['continuation_gap'][0]:.2f} of the continuation gap, "
            f"on held-out ones {held['methods'][A]['continuation_gap'][0]:.2f}") in FLAT
    assert f"({train['methods'][V]['continuation_gap'][0]:.2f} against {held['methods'][V]['continuation_gap'][0]:.2f})" in FLAT
    va = held["diffs"]["V-A"]["continuation_gap"]
    assert f"rises by {va[0]:.2f} [{va[1]:.2f}, {va[2]:.2f}]" in FLAT
    acc = {m: round(held["methods"][m]["recon_acc"][0] * 100) for m in (V, C)}
    gap = {m: held["methods"][m]["reconstruction_gap"][0] for m in (V, C)}
    cv = held["diffs"]["C-V"]["reconstruction_gap"]
    assert f"from {acc[V]} to {acc[C]} % of a span's tokens" in FLAT
    assert f"from {gap[V]:.2f} to {gap[C]:.2f} (paired +{cv[0]:.2f} [{cv[1]:.2f}, {cv[2]:.2f}])" in FLAT
    steps = sorted(json.loads((ab / arm / "summary.json").read_text())["steps"] for arm in "AVC")
    assert f"after {round(steps[0], -1):.0f}-{round(steps[-1], -2):,.0f} steps" in FLAT
