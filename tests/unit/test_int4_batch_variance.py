"""bench/int4_batch_variance.py (issue 29's probe of gemlite's eager/compiled divergence) on the CPU: the libraries the
CPU has are probed at every row count, the GPU ones are reported with the reason, and a bad shape is named."""

import json

import pytest


def test_cpu_dry_run_compares_the_same_rows(bench_module, tmp_path):
    probe = bench_module("int4_batch_variance")
    out = probe.main(["--device", "cpu", "--shapes", "128x384", "--out", str(tmp_path / "bv.json")])
    assert out == json.loads((tmp_path / "bv.json").read_text())
    rows = out["shapes"]["128x384"]
    assert set(rows) == {"bf16", "tinygemm"}
    assert "need a CUDA" in out["errors"]["gemlite"] and "need a CUDA (sm90)" in out["errors"]["fbgemm"]
    for lib, by_n in rows.items():
        assert [int(n) for n in by_n] == list(probe.ROWS)
        for n, r in by_n.items():
            assert r["bucket"] == probe.AnswerEngine.bucket(int(n)) >= int(n)
            assert r["graph_diff"] is None   # no CUDA graph on the CPU
            # each comparison is of the same input rows: were they not, the outputs would differ by ~100 %
            assert r["bucket_diff"] < 1e-2 and r["one_row_diff"] < 1e-2, (lib, n, r)
            # bf16 against its own weight in fp32, tinygemm against the de-quantised int4 weight: rounding only
            assert 0 < r["reference_err"] < 1e-2, (lib, n, r)


def test_a_shape_it_cannot_read_is_named(bench_module, tmp_path, capsys):
    probe = bench_module("int4_batch_variance")
    with pytest.raises(SystemExit):
        probe.main(["--device", "cpu", "--shapes", "128by384", "--out", str(tmp_path / "bv.json")])
    assert "'128by384': one of ['down', 'gate_up', 'o', 'qkv'] or NxK" in capsys.readouterr().err
