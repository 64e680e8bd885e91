"""bench/gist_content_probe.py: the means it prints are the token-weighted means of the per-document numbers it writes
(the intervals over documents that its later tables use come from those)."""

import importlib.util
import json

from tests.conftest import ROOT


def _probe():
    spec = importlib.util.spec_from_file_location("gist_content_probe", ROOT / "bench" / "gist_content_probe.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_per_document_rows_add_up_to_the_means(model_dir, real_text, tmp_path):
    words = real_text.split()
    data = tmp_path / "test.jsonl"
    data.write_text("".join(json.dumps({"doc_id": f"d{i}", "context": " ".join(words[i * 300 : i * 300 + 600])}) + "\n" for i in range(3)))
    out = tmp_path / "probe.json"
    _probe().main(["--model-ref", str(model_dir), "--dataset", str(data), "--docs", "2", "--prefix", "96", "--next", "9",
                   "--spans", "2", "--span", "8", "--cue", "4", "--out", str(out)])
    res = json.loads(out.read_text())
    assert res["documents"] == ["d0", "d1"]
    rows = {r["method"]: r for r in res["rows"]}
    per = res["per_document"]
    assert set(per) == {"none", "full"} and all(len(v) == 2 for v in per.values())
    for method in ("none", "full"):
        for kind in ("continuation", "reconstruction"):   # every document scores as many tokens: the plain mean
            for stat in ("nll", "acc"):
                mean = sum(d[f"{kind}_{stat}"] for d in per[method]) / 2
                assert abs(mean - rows[method][f"{kind}_{stat}"]) < 1e-9, (method, kind, stat)
    # reading the prefix reconstructs its own spans better than no context, document by document
    assert all(f["reconstruction_nll"] < z["reconstruction_nll"] for f, z in zip(per["full"], per["none"]))
    assert rows["full"]["reconstruction_gap_closed"] == 1.0 and rows["none"]["reconstruction_gap_closed"] == 0.0
