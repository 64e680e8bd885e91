"""bench/recon_ab_table.py: the stage-1 A/B's table (issue 27) computes gaps from the documents' mean NLLs, pairs arms
by document, and names what it cannot read."""

import json

import pytest


def _probe(path, acc_a, acc_v, nll_a, nll_v, n=4):
    row = lambda nll, acc: {"continuation_nll": nll, "continuation_acc": acc, "reconstruction_nll": nll, "reconstruction_acc": acc}  # noqa: E731
    per = {"none": [row(4.0, 0.3)] * n, "full": [row(1.0, 0.9)] * n,
           "gist16per512@A_s1": [row(nll_a, a) for a in acc_a], "gist16per128@V_s1": [row(nll_v, a) for a in acc_v]}
    path.write_text(json.dumps({"per_document": per}))
    return str(path)


def test_gaps_and_paired_differences(bench_module, tmp_path, capsys):
    table = bench_module("recon_ab_table")
    held = _probe(tmp_path / "h.json", [0.4, 0.5, 0.6, 0.5], [0.5, 0.6, 0.7, 0.6], nll_a=3.0, nll_v=2.5)
    train = _probe(tmp_path / "t.json", [0.7] * 4, [0.6] * 4, nll_a=2.0, nll_v=2.0)
    res = table.main(["--heldout", held, "--train", train, "--diff", "V-A", "--resamples", "200", "--out", str(tmp_path / "o.json")])
    h = res["held-out"]
    assert h["n"] == 4
    assert h["methods"]["gist16per512@A_s1"]["reconstruction_gap"][0] == pytest.approx(1 / 3)   # (4 - 3) / (4 - 1)
    assert h["methods"]["gist16per128@V_s1"]["reconstruction_gap"][0] == pytest.approx(0.5)
    acc = h["methods"]["gist16per512@A_s1"]["recon_acc"]
    assert acc[0] == pytest.approx(0.5) and acc[1] < 0.5 < acc[2]   # documents differ: an interval around the mean
    # V is A + 10 points on every document: the paired difference has no spread
    assert h["diffs"]["V-A"]["recon_acc"] == pytest.approx([0.1, 0.1, 0.1])
    assert h["diffs"]["V-A"]["reconstruction_gap"][0] == pytest.approx(0.5 - 1 / 3)
    assert h["diffs"]["V-A"]["continuation_gap"][0] == pytest.approx(0.5 - 1 / 3)   # the probe's NLLs are both kinds'
    # training documents: A's continuation gap (4 - 2) / 3 against 1/3 held out
    assert res["memory_continuation"]["gist16per512@A_s1"][0] == pytest.approx(2 / 3 - 1 / 3)
    assert res["memory"]["gist16per512@A_s1"][0] == pytest.approx(0.2)   # 70 % on training documents, 50 % held out
    assert res["memory"]["gist16per128@V_s1"][0] == pytest.approx(0.0)
    assert "| gist16per512@A_s1 | 50 % [" in capsys.readouterr().out
    assert json.loads((tmp_path / "o.json").read_text())["held-out"]["diffs"]["V-A"]


def test_names_an_arm_it_does_not_have_and_a_probe_without_documents(bench_module, tmp_path):
    table = bench_module("recon_ab_table")
    held = _probe(tmp_path / "h.json", [0.5] * 4, [0.5] * 4, nll_a=3.0, nll_v=3.0)
    with pytest.raises(SystemExit, match=r"--diff C-V: arms here are \['A', 'V', 'full', 'none'\]"):
        table.main(["--heldout", held, "--diff", "C-V", "--resamples", "10"])
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"rows": []}))
    with pytest.raises(SystemExit, match="old.json: no per_document rows"):
        table.main(["--heldout", str(old)])


def test_two_runs_of_the_same_documents_pair_an_arm_with_itself(bench_module, tmp_path):
    """--heldout old.json new.json:2: the second run's arms come in as A2 / V2, paired with the first run's on the same
    documents; a file of other documents or other none/full rows stops, naming it."""
    table = bench_module("recon_ab_table")
    old = _probe(tmp_path / "old.json", [0.4, 0.5, 0.6, 0.5], [0.5] * 4, nll_a=3.0, nll_v=3.0)
    new = _probe(tmp_path / "new.json", [0.5, 0.6, 0.7, 0.6], [0.5] * 4, nll_a=2.5, nll_v=3.0)
    for f in (old, new):   # both probes read the same documents
        d = json.loads(open(f).read())
        d["documents"] = ["a", "b", "c", "d"]
        open(f, "w").write(json.dumps(d))
    res = table.main(["--heldout", old, f"{new}:2", "--diff", "A2-A", "--resamples", "200"])["held-out"]
    assert set(res["methods"]) == {"none", "full", "gist16per512@A_s1", "gist16per128@V_s1", "gist16per512@A2_s1", "gist16per128@V2_s1"}
    assert res["diffs"]["A2-A"]["recon_acc"] == pytest.approx([0.1, 0.1, 0.1])
    assert res["diffs"]["A2-A"]["reconstruction_gap"][0] == pytest.approx(0.5 - 1 / 3)
    with pytest.raises(SystemExit, match=r"new.json: method gist16per512@A_s1 is already in an earlier file"):
        table.main(["--heldout", old, new])
    other = json.loads(open(new).read())
    other["documents"] = ["a", "b", "c", "e"]
    (tmp_path / "other.json").write_text(json.dumps(other))
    with pytest.raises(SystemExit, match=r"other.json: other documents than"):
        table.main(["--heldout", old, f"{tmp_path / 'other.json'}:2"])
    other["documents"] = ["a", "b", "c", "d"]
    other["per_document"]["full"] = [dict(r, reconstruction_nll=0.5) for r in other["per_document"]["full"]]
    (tmp_path / "other.json").write_text(json.dumps(other))
    with pytest.raises(SystemExit, match=r"other.json: its 'full' rows differ"):
        table.main(["--heldout", old, f"{tmp_path / 'other.json'}:2"])
