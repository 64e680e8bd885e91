"""bench/int4_quality_table.py: issue 29's quality check of one engine's answers against reference engines'."""

from __future__ import annotations

import gzip
import json

import pytest


def rows(preds: dict[str, str], sims: dict[str, float] | None = None) -> list[dict]:
    out = []
    for qid, pred in sorted(preds.items()):
        qtype = qid.split("::")[1]
        answer = {"passkey": "48213", "factual": "the red fox", "global": "a theme", "reasoning": "a reason"}[qtype]
        scores = {"embed_sim": sims[qid]} if sims and qid in sims else {}
        out.append({"id": qid, "doc_id": qid.split("::")[0], "qtype": qtype, "answer": answer, "prediction": pred, "scores": scores})
    return out


def write(path, recs, gz=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r) + "\n" for r in recs)
    if gz:
        path.with_suffix(".jsonl.gz").write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)


def test_the_table_recomputes_each_number_and_pairs_by_question(tmp_path, bench_module, capsys):
    """Passkey and F1 are recomputed from the answers (not read from scores), global proxy from embed_sim >= 0.5,
    reasoning as the mean similarity; identical answers are counted per type; the paired difference is test minus
    reference; a reference folder without the method is left out; .jsonl.gz reads like .jsonl."""
    tq = bench_module("int4_quality_table")
    ref = {"d1::passkey": "It is 48213.", "d2::passkey": "It is 48213.", "d1::factual": "the red fox", "d2::factual": "a dog",
           "d1::global": "x", "d2::global": "y", "d1::reasoning": "r", "d2::reasoning": "s"}
    test = {**ref, "d2::passkey": "It is 11111.", "d2::factual": "the red dog", "d2::global": "z"}
    sims_ref = {"d1::global": 0.6, "d2::global": 0.7, "d1::reasoning": 0.4, "d2::reasoning": 0.2}
    sims_test = {**sims_ref, "d2::global": 0.3}
    write(tmp_path / "int4/closed_book.jsonl", rows(test, sims_test), gz=True)
    write(tmp_path / "bf16/closed_book.jsonl", rows(ref, sims_ref))
    write(tmp_path / "int4/gist.jsonl", rows({"d1::passkey": "48213"}))
    write(tmp_path / "bf16/gist.jsonl", rows({"d1::passkey": "48213"}))
    (tmp_path / "nf4").mkdir()
    assert tq.main(["--test", f"int4={tmp_path / 'int4'}", "--ref", f"bf16={tmp_path / 'bf16'}", "--ref", f"nf4={tmp_path / 'nf4'}",
                    "--methods", "closed_book", "gist", "--out", str(tmp_path / "t.json")]) == 0
    got = json.loads((tmp_path / "t.json").read_text())
    assert got["test"] == "int4" and set(got["methods"]["closed_book"]) == {"bf16"}
    cb = got["methods"]["closed_book"]["bf16"]
    assert cb["passkey"]["identical"] == 1 and cb["passkey"]["ref"] == 1.0 and cb["passkey"]["test"] == 0.5
    assert cb["passkey"]["diff"] == pytest.approx(-0.5)
    # F1 (articles dropped): d1 1.0 both; d2 "a dog" vs "the red fox" = 0, "the red dog" vs "the red fox" = 1/2
    assert cb["factual"]["ref"] == pytest.approx(0.5) and cb["factual"]["test"] == pytest.approx(0.75)
    assert cb["global"]["ref"] == 1.0 and cb["global"]["test"] == 0.5 and cb["global"]["identical"] == 1
    assert cb["reasoning"]["diff"] == pytest.approx(0.0) and cb["reasoning"]["identical"] == 2
    assert cb["factual"]["lo"] <= cb["factual"]["diff"] <= cb["factual"]["hi"]
    assert got["methods"]["gist"]["bf16"] == {"passkey": {"n": 1, "identical": 1, "test": 1.0, "ref": 1.0, "diff": 0.0, "lo": 0.0, "hi": 0.0}}
    out = capsys.readouterr().out
    assert "| closed_book | passkey (passkey accuracy) | 2 | bf16 | 1 | 100.0 | 50.0 | -50.0 [" in out


def test_a_missing_test_file_or_unrelated_questions_stop_with_the_reason(tmp_path, bench_module, capsys):
    tq = bench_module("int4_quality_table")
    write(tmp_path / "bf16/closed_book.jsonl", rows({"d1::factual": "x"}))
    (tmp_path / "int4").mkdir()
    assert tq.main(["--test", f"int4={tmp_path / 'int4'}", "--ref", f"bf16={tmp_path / 'bf16'}", "--out", str(tmp_path / "t.json")]) == 1
    assert "no closed_book.jsonl(.gz) in" in capsys.readouterr().err
    write(tmp_path / "int4/closed_book.jsonl", rows({"d9::factual": "x"}))
    with pytest.raises(ValueError, match="share no question id"):
        tq.main(["--test", f"int4={tmp_path / 'int4'}", "--ref", f"bf16={tmp_path / 'bf16'}", "--methods", "closed_book",
                 "--out", str(tmp_path / "t.json")])
