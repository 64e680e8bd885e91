"""Self-study (gistpoc.train.self_study, rule self_study): the base model's own answers about each training document,
read in full, become stage 2's extra segments."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT, _model_dir
from tests.unit.train.test_train import _cfg, _cmd, tiny_dataset  # noqa: F401  (tiny_dataset is a fixture)

pytestmark = pytest.mark.slow
PROMPTS = ["Summarise the text in one sentence.", "What is the text about?"]


def test_records_are_the_base_models_greedy_answers_reading_the_document(tmp_path, tiny_dataset):  # noqa: F811
    from gistpoc.gist.cache import greedy_generate
    from gistpoc.gist.template import encode_prefix, encode_question, prompt_template
    from gistpoc.utils import read_jsonl

    out = tmp_path / "self_study.jsonl"
    model = json.dumps({"device": "cpu", "dtype": "float32", "attn_implementation": "eager"})
    subprocess.run([sys.executable, "scripts/self_study.py", "--model", model, "--model-ref", str(_model_dir()), "--train",
                    str(tiny_dataset / "train.jsonl"), "--prompts", json.dumps(PROMPTS), "--max-new-tokens", "12",
                    "--instruction", "Compress the text.", "--out", str(out)], check=True, cwd=ROOT)
    rows, train = read_jsonl(out), read_jsonl(tiny_dataset / "train.jsonl")
    docs = sorted({r["doc_id"] for r in train})
    assert sorted({r["doc_id"] for r in rows}) == docs and len(rows) == len(docs) * len(PROMPTS)
    assert {r["qtype"] for r in rows} == {"self_study"} and len({r["id"] for r in rows}) == len(rows)
    assert not any("gist_start_idx" in r or "n_gist" in r for r in rows)   # one file for every gist-N
    # the answer is what the base model says reading the whole document (recomputed here, eager)
    from gistpoc.model import load_model

    loaded = load_model({"device": "cpu", "dtype": "float32"}, _model_dir())
    tpl = prompt_template(loaded.tokenizer, "Compress the text.")
    r = rows[1]
    ids = encode_prefix(loaded.tokenizer, tpl, r["context"], []).prefix_ids + encode_question(loaded.tokenizer, tpl, r["question"])
    gen = greedy_generate(loaded.model, ids, 0, loaded.eos_ids, 12)
    assert r["answer"] == loaded.tokenizer.decode(gen.token_ids, skip_special_tokens=True).strip() and r["answer"]


def test_stage_2_learns_the_self_study_segments(tmp_path, tiny_dataset):  # noqa: F811
    """--extra-train adds the answers to their documents' sequences: a document's training row holds one more
    question-answer segment per prompt, and training runs on them."""
    from gistpoc.gist.template import prompt_template
    from gistpoc.model import add_gist_tokens, load_tokenizer
    from gistpoc.train.examples import doc_example, group_by_doc
    from gistpoc.utils import read_jsonl, write_jsonl

    train = read_jsonl(tiny_dataset / "train.jsonl")
    doc = train[0]["doc_id"]
    extra = [{k: v for k, v in train[0].items() if k not in ("gist_start_idx", "gist_end_idx", "gist_tokens", "n_gist")}
             | {"id": f"{doc}::self_study{i}", "qtype": "self_study", "question": p, "answer": f"answer {i}"} for i, p in enumerate(PROMPTS)]
    tok = load_tokenizer(_model_dir())
    gist_ids = add_gist_tokens(tok, 4)
    tpl = prompt_template(tok, "Compress the text.")
    plain = doc_example(tok, tpl, gist_ids, group_by_doc(train)[doc])
    both = doc_example(tok, tpl, gist_ids, group_by_doc(train + extra)[doc])
    assert len(both["question_ids"]) == len(plain["question_ids"]) + len(PROMPTS) and both["prefix_ids"] == plain["prefix_ids"]
    write_jsonl(tmp_path / "extra.jsonl", extra)
    cfg = _cfg(max_steps=2)
    subprocess.run(_cmd(tiny_dataset, tmp_path / "ck", tmp_path / "state", cfg) + ["--extra-train", str(tmp_path / "extra.jsonl")],
                   check=True, cwd=ROOT, capture_output=True)
    assert json.loads((tmp_path / "ck/summary.json").read_text())["steps"] == 2


def test_compiled_engine_answers_several_documents_per_pass_as_the_eager_loop(tiny_dataset):  # noqa: F811
    """Each document is read once into a full cache and its prompts continue it; the compiled engine takes several
    documents' prompts in one pass (per-row caches). Its answers are the eager loop's, one row at a time."""
    from gistpoc.model import load_model
    from gistpoc.train.self_study import self_study_records
    from gistpoc.utils import read_jsonl

    records = [r for r in read_jsonl(tiny_dataset / "train.jsonl") if r["split"] == "train"]
    loaded = load_model({"device": "cpu", "dtype": "float32", "attn_implementation": "eager"}, _model_dir())
    eager = self_study_records(loaded, records, PROMPTS, "Compress the text.", 8, "eager")
    compiled = self_study_records(loaded, records, PROMPTS, "Compress the text.", 8, "compiled", batch=4)  # 2 documents a pass
    assert len({r["doc_id"] for r in records}) >= 3   # so a pass of two documents and a last one of one are both taken
    assert [(r["id"], r["answer"]) for r in compiled] == [(r["id"], r["answer"]) for r in eager] and eager
