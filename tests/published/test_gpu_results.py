"""docs/gpu_results.md's target table states what bench/results/gpu_systems_h200.json holds (issue 14): every ratio
recomputed from the raw medians, and each kind's rows taken from the run the JSON names."""

from __future__ import annotations

import json

from tests.conftest import ROOT

RUNS = json.loads((ROOT / "bench/results/gpu_systems_h200.json").read_text())["runs"]
DOC = (ROOT / "docs/gpu_results.md").read_text()


def ttft(kind: str, method: str, engine: str = "compiled") -> float:
    return RUNS[kind][method][engine]["ttft_ms_median"]


def test_target_ratios_in_the_doc_come_from_the_json():
    bf16_rag = min(ttft("bf16", "rag_3x500", e) for e in ("eager", "compiled"))
    nf4_rag = min(ttft("nf4", "rag_3x500", e) for e in ("eager", "compiled"))
    gist_bf16, gist_nf4 = ttft("bf16", "gist25_from_saved_cache"), ttft("nf4", "gist25_from_saved_cache")
    floor = RUNS["bf16"]["weight_read_floor_ms"]
    decode = RUNS["bf16"]["gist25_from_saved_cache"]["compiled"]["decode_tok_s_median"]
    decode_8k = RUNS["bf16"]["full_context_8k"]["compiled"]["decode_tok_s_median"]
    assert f"**{gist_bf16 / bf16_rag:.3f}x**" in DOC
    assert f"**{gist_nf4 / nf4_rag:.2f}x**" in DOC
    assert f"**{gist_bf16 / floor:.2f}x**" in DOC
    assert f"**{decode:.0f} tok/s**" in DOC and f"**{decode / decode_8k:.2f}x**" in DOC
    assert f"{gist_nf4:.1f} ms vs RAG {nf4_rag:.1f} ms" in DOC and f"{gist_bf16:.1f} ms vs floor {floor:.2f} ms" in DOC
    fastest = min(RUNS["nf4"]["rag_3x500"][e]["ttft_ms_all"][i] for e in ("eager", "compiled") for i in range(5))
    assert f"({fastest:.1f} ms): {gist_nf4 / fastest:.3f}x" in DOC  # the thin NF4 margin, against RAG's best single run


def test_the_targets_hold_as_the_doc_says():
    """The issue's bars, from the raw numbers: the doc's 'yes' rows are true of the JSON."""
    nf4_rag = min(ttft("nf4", "rag_3x500", e) for e in ("eager", "compiled"))
    bf16_rag = min(ttft("bf16", "rag_3x500", e) for e in ("eager", "compiled"))
    assert ttft("bf16", "gist25_from_saved_cache") <= 0.2 * bf16_rag
    assert ttft("nf4", "gist25_from_saved_cache") <= 0.2 * nf4_rag
    assert ttft("bf16", "gist25_from_saved_cache") <= 2 * RUNS["bf16"]["weight_read_floor_ms"]
    gist = RUNS["bf16"]["gist25_from_saved_cache"]["compiled"]["decode_tok_s_median"]
    assert gist >= 100 and gist >= 2 * RUNS["bf16"]["full_context_8k"]["compiled"]["decode_tok_s_median"]
    # every eager/compiled divergence starts at a near-tie of the eager engine's top-2 logits
    for kind in RUNS:
        for method, row in RUNS[kind].items():
            agreement = row.get("agreement") if isinstance(row, dict) else None
            if agreement and not agreement.get("equal"):
                assert agreement["eager_top2_gap"] <= 0.25, (kind, method)


def test_int4_library_table_comes_from_the_kernel_json():
    """docs/gpu_results.md's 4-bit library table (issue 29): every layer time and its ratio to the weight-read floor
    recomputed from bench/results/int4_kernels_h100.json (floor: the layer's bytes for that format at copy bandwidth);
    the checks' relative errors as the doc states them."""
    k = json.loads((ROOT / "bench/results/int4_kernels_h100.json").read_text())
    assert k["device"].startswith("NVIDIA H100") and k["libraries"] == ["tinygemm", "gemlite"] and k["group_size"] == 128
    section = DOC[DOC.index("### 4-bit kernel libraries"):DOC.index("The rest of this file")]
    for rows in (1, 16, 32, 64):
        cells = []
        for lib in ("bf16", "tinygemm", "gemlite"):
            us = k["layer"][lib][str(rows)]
            floor_us = sum(s["bytes"][lib] for s in k["shapes"].values()) / (k["copy_bandwidth_GBps"] * 1e3)
            cells.append(f"{us:.1f} ({us / floor_us:.2f}x)")
        row = next(line for line in section.splitlines() if line.startswith(f"| {rows} |"))
        assert [c.strip("* ") for c in row.strip("|").split("|")[1:]] == cells, (row, cells)
    for lib in ("tinygemm", "gemlite"):
        err = max(c[lib] for c in k["checks"].values())
        assert f"{err:.4f} ({lib})" in section, lib


def test_int4_engine_rows_and_targets_come_from_the_h100_run():
    """docs/gpu_results.md's "int4 in the compiled engine" section (issue 29): each kind's gist-25 TTFT, its ratio to the
    kind's weight-read floor, decode tokens/s and its share of the floor's, peak memory and the RAG / 8k TTFTs are those
    of bench/results/int4_gpu_h100/gpu_systems.json; the target table's ratios and the explanation's layer arithmetic
    are recomputed from it and from the same run's int4_kernels.json."""
    run = ROOT / "bench/results/int4_gpu_h100"
    g = json.loads((run / "gpu_systems.json").read_text())
    k = json.loads((run / "int4_kernels.json").read_text())
    assert g["device"].startswith("NVIDIA H100") and g["cap_gb"] == 24.0 and g["layers"] == 32
    section = DOC[DOC.index("### int4 in the compiled engine"):DOC.index("The rest of this file")]
    rows = {"bf16": "| bf16 |", "int4-gemlite": "| int4-gemlite", "int4": "| int4-tinygemm"}
    c = {kind: g["runs"][kind]["gist25_from_saved_cache"]["compiled"] for kind in rows}
    floor = {kind: g["runs"][kind]["weight_read_floor_ms"] for kind in rows}
    for kind, start in rows.items():
        line = next(x for x in section.splitlines() if x.startswith(start))
        ratio = c[kind]["ttft_ms_median"] / floor[kind]
        assert f"{floor[kind]:.2f} ms" in line and f"{ratio:.{1 if kind == 'int4' else 2}f}x)" in line, (kind, line)
        assert f"{c[kind]['ttft_ms_median']:.{1 if kind == 'int4' else 2}f} ms" in line, (kind, line)
        tok = c[kind]["decode_tok_s_median"]
        assert f"{tok:.0f} ({tok * floor[kind] / 1000:.2f})" in line and f"| {c[kind]['peak_mem_gib']:.1f} |" in line, (kind, line)
    for kind in ("bf16", "int4-gemlite"):
        for method in ("rag_3x500", "full_context_8k"):
            assert f"{g['runs'][kind][method]['compiled']['ttft_ms_median']:.1f} ms" in section, (kind, method)
    gem = c["int4-gemlite"]["ttft_ms_median"]
    rag4 = g["runs"]["int4-gemlite"]["rag_3x500"]["compiled"]["ttft_ms_median"]
    rag_fastest = min(g["runs"][kind]["rag_3x500"][e]["ttft_ms_median"] for kind in ("bf16", "int4-gemlite") for e in ("eager", "compiled"))
    assert f"{gem / rag4:.3f}x RAG in the same format" in section and f"{gem / rag_fastest:.3f}x the fastest RAG" in section
    assert gem > 3 * floor["int4-gemlite"] and c["bf16"]["ttft_ms_median"] > 1.2 * floor["bf16"]   # the "no" rows
    assert c["bf16"]["decode_tok_s_median"] * floor["bf16"] / 1000 < 0.85
    # the explanation: 32 layers of gemlite at 32 rows, the rest of the pass, bf16's rest
    layer = {lib: k["layer"][lib] for lib in ("bf16", "gemlite")}
    gemm = 32 * layer["gemlite"]["32"] / 1000
    assert f"{layer['gemlite']['32']:.1f} us" in section and f"{gemm:.2f} ms of the {gem:.2f} ms pass" in section
    assert f"{gemm / floor['int4-gemlite']:.1f}x the whole model's floor" in section
    assert f"{c['bf16']['ttft_ms_median'] - 32 * layer['bf16']['32'] / 1000:.2f} ms)" in section
    # session 28: the unfused layer (as the engine ran it) and the fused one, timed side by side on an H100
    s28 = run / "session28"
    fused, unfused = (json.loads((s28 / f).read_text()) for f in ("int4_kernels.json", "int4_kernels_unfused.json"))
    assert fused["device"].startswith("NVIDIA H100") and unfused["device"].startswith("NVIDIA H100")
    assert set(unfused["shapes"]) == {"q", "k", "v", "o", "gate", "up", "down"} and set(fused["shapes"]) == {"qkv", "o", "gate_up", "down"}
    f32, u32 = fused["layer"]["gemlite"]["32"], unfused["layer"]["gemlite"]["32"]
    f1, u1 = fused["layer"]["gemlite"]["1"], unfused["layer"]["gemlite"]["1"]
    flat = " ".join(section.split())
    assert abs(f32 / layer["gemlite"]["32"] - 1) < 0.01 and f"({f32:.1f} against {layer['gemlite']['32']:.1f} us at 32 rows)" in flat
    assert f"takes {u32:.1f} us at 32 rows and {u1:.1f} us at one row, against {f32:.1f} and {f1:.1f} fused" in flat
    rest = gem - 32 * u32 / 1000
    bf16_rest = c["bf16"]["ttft_ms_median"] - 32 * layer["bf16"]["32"] / 1000
    assert f"32 x {u32:.1f} us = {32 * u32 / 1000:.2f} ms of GEMMs, and the rest ({rest:.2f} ms)" in flat and f"({bf16_rest:.2f} ms)" in flat
    proj = gem - 32 * (u32 - f32) / 1000
    decode = 1000 / (1000 / c["int4-gemlite"]["decode_tok_s_median"] - 32 * (u1 - f1) / 1000)
    assert f"a gist-25 pass of {proj:.2f} ms ({proj / floor['int4-gemlite']:.2f}x the floor, still above 3x) and about {decode:.0f} tokens/s" in flat
    one_row = 32 * layer["gemlite"]["1"] / 1000   # this section's run (session 27), as the prose says
    assert f"({layer['gemlite']['1']:.1f} us a layer, this run) would bring the pass to {one_row:.2f} + {rest:.2f} = {one_row + rest:.2f} ms, " \
           f"{(one_row + rest) / floor['int4-gemlite']:.2f}x" in flat
    assert "session28/test_int4.log" in flat and "6 passed" in (s28 / "test_int4.log").read_text()


def test_fbgemm_and_fused_gemlite_rows_come_from_the_session30_run():
    """docs/gpu_results.md's "FBGEMM and the fused gemlite engine, measured" (issue 29): the engine table, the kernel
    multiples, the numerics, the 3x arithmetic and the agreement ranges, recomputed from
    bench/results/int4_gpu_h100/session30/."""
    run = ROOT / "bench/results/int4_gpu_h100/session30"
    g = json.loads((run / "gpu_systems.json").read_text())
    k = json.loads((run / "int4_kernels.json").read_text())
    assert g["device"].startswith("NVIDIA H100") and k["device"].startswith("NVIDIA H100") and g["cap_gb"] == 24.0
    assert k["libraries"] == ["tinygemm", "gemlite", "fbgemm"] and "7 passed" in (run / "test_int4.log").read_text()
    section = DOC[DOC.index("### FBGEMM and the fused gemlite engine"):DOC.index("The rest of this file")]
    flat = " ".join(section.split())
    R = g["runs"]
    rows = {"bf16": "| bf16 |", "int4-gemlite": "| int4-gemlite, fused |", "int4-fbgemm": "| int4-fbgemm |"}
    c = {kind: R[kind]["gist25_from_saved_cache"]["compiled"] for kind in rows}
    floor = {kind: R[kind]["weight_read_floor_ms"] for kind in rows}
    for kind, start in rows.items():
        line = next(x for x in section.splitlines() if x.startswith(start))
        t, tok = c[kind]["ttft_ms_median"], c[kind]["decode_tok_s_median"]
        want = (f"{start} {floor[kind]:.2f} ms | **{t:.2f} ms ({t / floor[kind]:.2f}x)** | **{tok:.0f} ({tok * floor[kind] / 1000:.2f})** | "
                f"{c[kind]['peak_mem_gib']:.1f} | {R[kind]['rag_3x500']['compiled']['ttft_ms_median']:.1f} ms | "
                f"{R[kind]['full_context_8k']['compiled']['ttft_ms_median']:.1f} ms |")
        assert line == want, (line, want)
    # the layer multiples of the kernel table, as the bullet lists them
    def layer(lib):
        floor_us = sum(s["bytes"][lib] for s in k["shapes"].values()) / (k["copy_bandwidth_GBps"] * 1e3)
        return [k["layer"][lib][str(r)] for r in (1, 16, 32, 64)], floor_us
    fb, fb_floor = layer("fbgemm")
    assert "FBGEMM " + " / ".join(f"{us / fb_floor:.2f}x" for us in fb) in flat
    assert "(" + " / ".join(f"{us:.1f}" for us in fb) + " us)" in flat
    for lib, name in (("gemlite", "gemlite"), ("tinygemm", "tinygemm")):
        us, fl = layer(lib)
        assert f"{name} " + " / ".join(f"{u / fl:.2f}x" for u in us) in flat, lib
    fractions = [t["fbgemm"][r]["bandwidth_fraction"] for s in k["shapes"].values() for t in [s["times"]] for r in ("1", "16", "32", "64")]
    assert f"at {min(fractions):.2f}-{max(fractions):.2f} of the copy bandwidth" in flat
    bf16 = [s["times"]["bf16"][r]["bandwidth_fraction"] for s in k["shapes"].values() for r in ("1", "16", "32", "64")]
    assert f"cuBLAS reads bf16 at {min(bf16):.2f}-{max(bf16):.2f}" in flat
    for lib, name in (("fbgemm", "FBGEMM"), ("tinygemm", "tinygemm"), ("gemlite", "gemlite")):
        assert f"{name} {max(ch[lib] for ch in k['checks'].values()):.4f}" in flat, lib
    # the 3x arithmetic
    gist = c["int4-fbgemm"]["ttft_ms_median"]
    gemm = 32 * k["layer"]["fbgemm"]["32"] / 1000
    rest = gist - gemm
    assert f"32 x {k['layer']['fbgemm']['32']:.1f} us = {gemm:.2f} ms of the {gist:.2f} ms pass, {gemm / floor['int4-fbgemm']:.2f}x" in flat
    assert f"the rest is {rest:.2f} ms" in flat
    g_rest = c["int4-gemlite"]["ttft_ms_median"] - 32 * k["layer"]["gemlite"]["32"] / 1000
    assert f"leaves {g_rest:.2f} ms outside its GEMMs" in flat
    need = (3 * floor["int4-fbgemm"] - rest) / 32 * 1000
    assert f"3x the floor ({3 * floor['int4-fbgemm']:.2f} ms) needs a layer of at most {need:.1f} us at 32 rows" in flat
    best = sum(min(s["times"][lib]["32"]["us"] for lib in ("tinygemm", "gemlite", "fbgemm")) for s in k["shapes"].values())
    assert f"gives {best:.1f} us a layer, {32 * best / 1000:.2f} ms, about {(32 * best / 1000 + rest) / floor['int4-fbgemm']:.1f}x" in flat
    assert gist > 3 * floor["int4-fbgemm"] and c["int4-gemlite"]["ttft_ms_median"] > 3 * floor["int4-gemlite"]
    # against RAG
    rag_own = R["int4-fbgemm"]["rag_3x500"]["compiled"]["ttft_ms_median"]
    fastest = min(R[kd]["rag_3x500"][e]["ttft_ms_median"] for kd in R for e in ("eager", "compiled"))
    assert f"{gist / rag_own:.3f}x its own RAG ({rag_own:.1f} ms) and {gist / fastest:.3f}x the fastest RAG of the run (bf16, eager, {fastest:.1f} ms)" in flat
    assert fastest == R["bf16"]["rag_3x500"]["eager"]["ttft_ms_median"]
    targets = DOC[DOC.index("| 4-bit gist-25 TTFT <= 0.1x RAG's TTFT, same run |"):]
    targets = targets[:targets.index("\n")]
    assert f"Session 30: FBGEMM {gist / rag_own:.3f}x its own RAG, {gist / fastest:.3f}x the fastest of the run" in targets
    assert gist / rag_own <= 0.1 < gist / fastest and f"no ({gist / fastest:.3f}x)" in targets
    # agreement ranges
    def gaps(kind, run_json=R):
        return [abs(v["agreement"]["logit_gap_eager_vs_compiled_token"]) for v in run_json[kind].values()
                if isinstance(v, dict) and v.get("agreement") and not v["agreement"]["equal"]]
    assert R["int4-fbgemm"]["gist25_from_saved_cache"]["agreement"]["equal"] and len(gaps("int4-fbgemm")) == 6
    assert f"at most {max(gaps('int4-fbgemm')):.2f} logits apart (bf16, same run: at most {max(gaps('bf16')):.2f}" in flat
    firsts = [v["agreement"]["first_divergence_step"] for v in R["int4-gemlite"].values() if isinstance(v, dict) and v.get("agreement")]
    assert len(firsts) == 7 and set(firsts) == {1}
    prev = json.loads((ROOT / "bench/results/int4_gpu_h100/gpu_systems.json").read_text())["runs"]
    assert (f"{min(gaps('int4-gemlite')):.2f}-{max(gaps('int4-gemlite')):.2f} logits apart (the previous run: "
            f"{min(gaps('int4-gemlite', prev)):.2f}-{max(gaps('int4-gemlite', prev)):.2f})") in flat


def test_gemlites_divergence_paragraph_comes_from_the_batch_variance_probe():
    """The session-31 explanation of gemlite's eager/compiled divergence: every number is the probe's
    (bench/results/int4_gpu_h100/session31/batch_variance.json), and the pattern it states holds in the file."""
    d = json.loads((ROOT / "bench/results/int4_gpu_h100/session31/batch_variance.json").read_text())
    flat = " ".join(DOC.split())
    par = flat[flat.index("**Explained in session 31**"):flat.index("Whether 4 bits move a quality number on real weights")]

    def cells(lib, key):
        return [d["shapes"][s][lib][n][key] for s in d["shapes"] for n in d["shapes"][s][lib]]

    def e(x):
        return f"{x:.1e}".replace("e-0", "e-")   # 1.5e-4, as the doc writes it

    for lib in ("tinygemm", "fbgemm"):   # bit-identical in all three comparisons
        assert all(v == 0 for k in ("bucket_diff", "graph_diff", "one_row_diff") for v in cells(lib, k)), lib
    assert f"bf16 cuBLAS differs by at most {e(max(cells('bf16', 'bucket_diff') + cells('bf16', 'one_row_diff') + cells('bf16', 'graph_diff')))}" in par
    assert f"gemlite differs by up to {e(max(cells('gemlite', 'bucket_diff')))} between a row's prompt-length pass and its bucket pass" in par
    assert f"by up to {e(max(cells('gemlite', 'graph_diff')))} between an eager call and the same call replayed" in par
    one = cells("gemlite", "one_row_diff")
    assert f"by {e(min(one))} to {e(max(one))} between a row alone and the same row in a batch" in par
    g = {s: d["shapes"][s]["gemlite"] for s in d["shapes"]}
    # graph replay agrees exactly where gemlite runs its plain GEMM (bucket >= 64), and only there
    assert all((g[s][n]["graph_diff"] == 0) == (g[s][n]["bucket"] >= 64) for s in g for n in g[s])
    assert "graph difference 0 at 37 and 100 rows, buckets 64 and 128" in par
    one_row = [g[s]["1"]["reference_err"] for s in g]
    assert f"{e(one_row[0])} relative error against the de-quantised product ({e(g['down']['1']['reference_err'])} for down)" in par
    gemm = [g[s]["100"]["reference_err"] for s in g]
    assert f"against {e(min(gemm))}-{e(max(gemm))} for gemlite's GEMM at 100 rows" in par
    others = cells("tinygemm", "reference_err") + cells("fbgemm", "reference_err")
    assert f"{e(min(others))}-{e(max(others))} for tinygemm and FBGEMM at every row count" in par


def test_the_bf16_breakdown_comes_from_the_h200_profile():
    """docs/gpu_results.md "Where the bf16 gist pass and decode step go": each cell is engine_kernels_h200.json k2's
    profile grouped by kernel, and the arithmetic against the 3.54 ms floor follows from it."""
    k = json.loads((ROOT / "bench/results/engine_kernels_h200.json").read_text())["k2"]["engine_bf16"]["kernels"]
    flat = " ".join(DOC.split())
    sec = flat[flat.index("### Where the bf16 gist pass and decode step go"):flat.index("The rest of this file is the earlier H100 run")]
    floor = 3.54
    got = {}
    for label, rep_key, row in (("prompt", "prompt_pass_ms", "gist pass (32-token question, 25 cached slots)"),
                                ("step", "decode_step_ms", "decode step (one token)")):
        cat = {"gemm": 0.0, "attn": 0.0, "fused": 0.0}
        for name, (_, ms) in k[f"{label}_top"].items():
            key = ("gemm" if name.startswith("nvjet") or "splitKreduce" in name else "attn" if "sdpa" in name
                   else "fused" if name.startswith("_") else None)
            if key:
                cat[key] += ms
        total = sum(k[f"{label}_gpu_ms_by_kind"].values())
        rest = total - sum(cat.values())
        rep = k[rep_key]
        assert (f"| {row} | {cat['gemm']:.2f} | {cat['attn']:.2f} | {cat['fused']:.2f} | {rest:.2f} | {total:.2f} | "
                f"{rep:.2f} | {rep - total:.2f} |") in sec, row
        got[label] = (cat, total, rep)
    (pc, _, prep), (sc, stot, srep) = got["prompt"], got["step"]
    assert f"the GEMMs alone are {pc['gemm'] / floor:.2f}x it in the gist pass and {sc['gemm'] / floor:.2f}x in the decode step" in sec
    assert f"leaves {1.2 * floor - pc['gemm']:.2f} ms for everything that is not a weight GEMM, against {prep - pc['gemm']:.2f} ms now" in sec
    assert f"decode at {floor / sc['gemm']:.2f} of the floor's tokens/s" in sec
    assert f"a step of <= {floor / 0.85:.2f} ms: {floor / 0.85 - sc['gemm']:.2f} ms besides the GEMMs, against {srep - sc['gemm']:.2f} now" in sec
    launches = sum(n for name, (n, _) in k["step_top"].items() if name.startswith("_"))
    assert f"{srep - stot:.2f} ms of idle time" in sec and f"the fused kernels ({sc['fused']:.2f} ms for {launches} launches)" in sec
    assert f"({sc['attn'] / 32 * 1000:.0f} us a layer" in sec
