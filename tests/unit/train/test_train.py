"""Training on real data: loss falls, divergence stops cleanly, an interrupted run resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from gistpoc.config import validate_config
from tests.conftest import ROOT, _model_dir

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory, model_dir):
    """Real documents -> grounded Q&A -> passkeys -> gist-4 records (the data stage's library path)."""
    from gistpoc.data import extract as E
    from gistpoc.data.dataset import build_records, inject_all
    from gistpoc.data.documents import window_document
    from gistpoc.model import add_gist_tokens, load_tokenizer
    from gistpoc.qa.grounded import grounded_qa
    from gistpoc.utils import IssueLog, write_jsonl

    tok = load_tokenizer(model_dir)
    add_gist_tokens(tok, 4)
    raw = list(E.iter_mediawiki_xml(ROOT / "resources/raw/wikipedia/enwiki-20250201-tiny_dump.xml.bz2", IssueLog()))
    docs = []
    for i, d in enumerate(raw):
        docs += [{**w, "split": "train" if i < 4 else "val"} for w in window_document(d, tok, 64, 96, 1, IssueLog())]
    records = build_records(docs, {d["doc_id"]: grounded_qa(d) for d in docs}, {p["doc_id"]: p for p in inject_all(docs, 1, 5)}, tok, "Compress the text.", 4)
    out = tmp_path_factory.mktemp("data")
    write_jsonl(out / "train.jsonl", [r for r in records if r["split"] == "train"])
    write_jsonl(out / "val.jsonl", [r for r in records if r["split"] == "val"])
    return out


def _cfg(**over):
    cfg = validate_config(yaml.safe_load((ROOT / "config.yaml").read_text()))["train"]
    cfg.update({"warmup_steps": 1, "batch_size": 2, "grad_accum": 1, "passkey_share": 0.5, "eval_docs": 1, "checkpoint_every_steps": 1,
                "lr_lora": 3e-3, "lr_embed": 3e-3, "curriculum": {**cfg["curriculum"], "stages": [32, 64], "check_every_steps": 100, "heldout_windows": 2}})
    cfg.update(over)
    return cfg


def _cmd(data: Path, out: Path, state: Path, cfg: dict):
    model = json.dumps({"device": "cpu", "dtype": "float32", "attn_implementation": "eager", "quantization": "none"})
    return [sys.executable, "scripts/train_gist.py", "--model", model, "--model-ref", str(_model_dir()), "--train-cfg", json.dumps(cfg),
            "--train", str(data / "train.jsonl"), "--val", str(data / "val.jsonl"), "--n-gist", "4", "--instruction", "Compress the text.",
            "--seed", "3", "--passkey-digits", "5", "--out-dir", str(out), "--state-dir", str(state)]


def test_loss_goes_down_and_logs_are_complete(tmp_path, tiny_dataset, model_dir):
    cfg = _cfg(max_steps=10)
    cfg["curriculum"]["check_every_steps"] = 5
    subprocess.run(_cmd(tiny_dataset, tmp_path / "ck", tmp_path / "state", cfg), check=True, cwd=ROOT)
    import csv

    rows = list(csv.DictReader(open(tmp_path / "ck/train_log.csv")))
    assert len(rows) == 10
    assert set(rows[0]) >= {"loss", "lr_lora", "lr_embed", "grad_norm", "gist_norm_mean", "gist_norm_max", "tokens_per_s", "stage_tokens"}
    assert {int(r["passkey_microbatches"]) for r in rows} == {0, 1}   # both kinds of micro-batch were drawn
    losses = [float(r["loss"]) for r in rows]
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4        # the loss goes down
    evals = list(csv.DictReader(open(tmp_path / "ck/eval_log.csv")))
    assert {e["kind"] for e in evals} >= {"passkey_acc", "passkey_acc_longest", "val_loss"}
    assert [int(e["step"]) for e in evals if e["kind"] == "val_loss"] == [5, 10]
    assert float(rows[0]["gist_norm_max"]) != float(rows[-1]["gist_norm_max"])   # gist rows are trained
    # a finished run leaves no resumable state that could stand in for a retrain
    assert (tmp_path / "ck/adapter_config.json").exists() and not (tmp_path / "state").exists()
    summary = json.loads((tmp_path / "ck/summary.json").read_text())
    assert summary["steps"] == 10 and summary["stopped_by"] == "max_steps"
    held = {(r["length"], r["depth"]) for r in summary["heldout_passkey"]}
    assert {(32, "all"), (64, "all")} <= held
    # the checkpoint loads for inference (base + gist rows + LoRA, merged)
    from gistpoc.model import load_model

    lm = load_model({"device": "cpu"}, model_dir, n_gist=4, adapter_dir=tmp_path / "ck")
    assert len(lm.gist_ids) == 4 and lm.tokenizer.convert_ids_to_tokens(lm.gist_ids)[0] == "<GIST_0>"


def test_interrupted_run_resumes_from_its_last_checkpoint(tmp_path, tiny_dataset):
    # promote_at 0: every check promotes, so the stage is a known function of the step (32 -> 48 -> 64 -> gate)
    cfg = _cfg(max_steps=5)
    cfg["curriculum"].update({"stages": [32, 48, 64], "check_every_steps": 1, "promote_at": 0.0})
    cmd = _cmd(tiny_dataset, tmp_path / "ck", tmp_path / "state", cfg)
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    progress = tmp_path / "state/progress.json"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if progress.exists() and json.loads(progress.read_text())["step"] >= 2:
            break
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)   # as hard as a pre-empted cluster job
    proc.wait()
    done = json.loads(progress.read_text())["step"]
    assert 2 <= done < 5 and not (tmp_path / "ck").exists()
    log = tmp_path / "resume.log"
    subprocess.run(cmd + ["--log", str(log)], check=True, cwd=ROOT)
    summary = json.loads((tmp_path / "ck/summary.json").read_text())
    assert summary["resumed_from_step"] == done and summary["steps"] == 5
    stage = min(done, 2)
    assert f"resuming gist-4 from step {done} in curriculum stage {stage} ({[32, 48, 64][stage]} tokens)" in log.read_text()
    # the promotions are those of one uninterrupted run: no stage restarted, none skipped
    assert [(p["step"], p["to"]) for p in summary["curriculum"]["promotions"]] == [(1, 48), (2, 64), (3, None)]
    assert summary["curriculum"]["final_gate_step"] == 3
    import csv

    assert [int(r["step"]) for r in csv.DictReader(open(tmp_path / "ck/train_log.csv"))] == list(range(1, 6))


def test_a_stop_file_ends_training_after_the_step_with_the_weights_saved(tmp_path, tiny_dataset):
    """<state-dir>.STOP, touched while a run goes (e.g. when a GPU lease runs short): the run ends after that step as
    at the time limit, saves its adapter and says why it stopped; a STOP left from before the run does not stop it."""
    cfg = _cfg(max_steps=400)
    (tmp_path / "state.STOP").touch()   # stale: removed when the run starts
    proc = subprocess.Popen(_cmd(tiny_dataset, tmp_path / "ck", tmp_path / "state", cfg), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    progress, deadline = tmp_path / "state/progress.json", time.time() + 300
    while time.time() < deadline and proc.poll() is None and not (progress.exists() and json.loads(progress.read_text())["step"] >= 2):
        time.sleep(0.2)
    (tmp_path / "state.STOP").touch()
    assert proc.wait(300) == 0
    summary = json.loads((tmp_path / "ck/summary.json").read_text())
    assert summary["stopped_by"] == "stop_file" and 2 <= summary["steps"] < 400
    assert (tmp_path / "ck/adapter_config.json").exists()


def test_exploding_gist_embeddings_stop_with_a_clear_message(tmp_path, tiny_dataset):
    cfg = _cfg(max_steps=3, lr_embed=0.9, max_embed_norm=5.0, warmup_steps=0)
    res = subprocess.run(_cmd(tiny_dataset, tmp_path / "ck", tmp_path / "state", cfg), cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 1
    assert "TrainingDiverged" in res.stderr and "train.max_embed_norm" in res.stderr and "failure mode 2" in res.stderr
    assert not (tmp_path / "ck").exists()


def test_full_fine_tuning_with_both_auxiliary_losses(tmp_path, tiny_dataset, model_dir):
    """train.method: full trains every weight; reconstruction after a cue, continuation of the text after each window
    and self-distillation add their terms, each logged."""
    cfg = _cfg(max_steps=4, method="full", lr_lora=1e-5, lr_embed=1e-4)
    cfg["curriculum"]["stages"] = [64]
    cfg["aux"] = {"cue_continuation": 0.5, "cue_tokens": 8, "continuation_tokens": 24, "cue_every_tokens": 32, "self_distill": 0.5,
                  "continuation": 0.5, "next_tokens": 16}
    subprocess.run(_cmd(tiny_dataset, tmp_path / "ck", tmp_path / "state", cfg), check=True, cwd=ROOT)
    import csv

    rows = list(csv.DictReader(open(tmp_path / "ck/train_log.csv")))
    pk = [r for r in rows if int(r["passkey_microbatches"])]
    docs = [r for r in rows if not int(r["passkey_microbatches"])]
    assert pk and docs                                             # seed 3 draws both kinds in 4 steps
    assert all(float(r["aux_loss"]) > 0 for r in pk)               # the cue continuation is learned from the gist
    assert all(float(r["next_loss"]) > 0 for r in pk) and all(float(r["next_loss"]) == 0 for r in docs)   # windows only
    assert all(float(r["kl"]) > 0 for r in docs) and all(float(r["kl"]) == 0 for r in pk)
    assert not (tmp_path / "ck/adapter_config.json").exists() and (tmp_path / "ck/config.json").exists()
    summary = json.loads((tmp_path / "ck/summary.json").read_text())
    assert summary["method"] == "full"
    from gistpoc.model import load_model

    lm = load_model({"device": "cpu"}, model_dir, n_gist=4, adapter_dir=tmp_path / "ck")   # the whole model replaces the base
    base = load_model({"device": "cpu"}, model_dir, n_gist=4)
    w, w0 = lm.model.model.layers[0].self_attn.q_proj.weight, base.model.model.layers[0].self_attn.q_proj.weight
    assert lm.gist_ids == base.gist_ids and not torch_equal(w, w0)


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


def test_pretrained_adapter_is_validated_and_fine_tuning_starts_from_it(tmp_path, tiny_dataset, gist_model):
    """Stage 1 (pretrain_gist) on training-bucket documents only, its provenance, and stage 2 starting from it;
    a wrong N, another base model or a missing file stops with a message naming the file."""
    import dataclasses
    import shutil

    import torch
    from safetensors.torch import load_file

    from gistpoc.data.documents import split_of
    from gistpoc.train import pretrained
    from gistpoc.utils import read_jsonl, write_jsonl

    recs = [r for f in ("train.jsonl", "val.jsonl") for r in read_jsonl(tiny_dataset / f) if split_of(r["doc_id"]) == "train"]
    write_jsonl(tmp_path / "pre.jsonl", recs)
    cfg = _cfg(max_steps=2, passkey_share=1.0, lr_schedule="constant")
    cmd = _cmd(tiny_dataset, tmp_path / "pre", tmp_path / "state", cfg)
    cmd[1] = "scripts/pretrain_gist.py"
    i = cmd.index("--val")
    del cmd[i : i + 2]
    cmd[cmd.index("--train") + 1] = str(tmp_path / "pre.jsonl")
    subprocess.run(cmd, check=True, cwd=ROOT)
    prov = json.loads((tmp_path / "pre/provenance.json").read_text())
    docs = {r["doc_id"] for r in recs}
    assert prov["n_gist"] == 4 and prov["steps"] == 2 and prov["lora"]["lora_r"] == cfg["lora_r"]
    assert prov["heldout_documents"] and set(prov["training_documents"]) | set(prov["heldout_documents"]) == docs
    assert not set(prov["training_documents"]) & set(prov["heldout_documents"])
    assert all(split_of(d) == "train" for d in prov["training_documents"])
    assert pretrained.check(tmp_path / "pre", gist_model, cfg)["steps"] == 2

    # stage 2 from the adapter: at a learning rate of ~0 the fine-tuned weights are the pre-trained ones
    cfg2 = _cfg(max_steps=1, lr_lora=1e-20, lr_embed=1e-20)
    cmd = _cmd(tiny_dataset, tmp_path / "ft", tmp_path / "state2", cfg2) + ["--pretrained", str(tmp_path / "pre")]
    subprocess.run(cmd, check=True, cwd=ROOT)
    summary = json.loads((tmp_path / "ft/summary.json").read_text())
    assert summary["pretrained"]["adapter_sha256"] == pretrained.file_hash(tmp_path / "pre")
    a, b = load_file(str(tmp_path / "pre/adapter_model.safetensors")), load_file(str(tmp_path / "ft/adapter_model.safetensors"))
    assert set(a) == set(b) and any(v.abs().sum() > 0 for k, v in a.items() if "lora_B" in k)
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)

    with pytest.raises(pretrained.PretrainedError, match="N = 4 gist tokens, this checkpoint has N = 2"):
        pretrained.check(tmp_path / "pre", dataclasses.replace(gist_model, gist_ids=gist_model.gist_ids[:2]), cfg)
    with pytest.raises(pretrained.PretrainedError, match="lora_r"):
        pretrained.check(tmp_path / "pre", gist_model, {**cfg, "lora_r": 8})
    other = tmp_path / "other"
    shutil.copytree(tmp_path / "pre", other)
    (other / "provenance.json").write_text(json.dumps({**prov, "base_fingerprint": "0" * 64}))
    with pytest.raises(pretrained.PretrainedError, match=f"{other}/provenance.json was trained on another base model"):
        pretrained.check(other, gist_model, cfg)
    (other / "provenance.json").write_text(json.dumps({**prov, "training_documents": ["enwiki:12"]}))
    with pytest.raises(pretrained.PretrainedError, match="outside the train split"):
        pretrained.check(other, gist_model, cfg)
    (other / "adapter_model.safetensors").unlink()
    with pytest.raises(pretrained.PretrainedError, match=f"{other}/adapter_model.safetensors is missing"):
        pretrained.check(other, gist_model, cfg)
    # the script stops with that message too, before training
    res = subprocess.run(_cmd(tiny_dataset, tmp_path / "ft2", tmp_path / "state3", cfg2) + ["--pretrained", str(other)],
                         cwd=ROOT, capture_output=True, text=True)
    assert res.returncode != 0 and "adapter_model.safetensors is missing" in res.stderr + res.stdout


def test_final_heldout_table_scores_each_length_once(tmp_path, tiny_dataset, model_dir, monkeypatch):
    """The last step's gate check already scored the current stage and the longest length with the final weights;
    the summary's held-out table reuses those and scores only the other lengths (held-out checks are most of a
    short CPU run's time)."""
    from gistpoc.model import load_model
    from gistpoc.train import loop
    from gistpoc.utils import read_jsonl

    calls = []
    real = loop.passkey_hits
    monkeypatch.setattr(loop, "passkey_hits", lambda model, tok, rows, eos, bs: calls.append(len(rows)) or real(model, tok, rows, eos, bs))
    cfg = _cfg(max_steps=2)
    cfg["curriculum"]["check_every_steps"] = 2
    loaded = load_model({"device": "cpu", "dtype": "float32", "attn_implementation": "eager", "quantization": "none"}, model_dir,
                        n_gist=4, trainable=True)
    loop.train_gist(loaded, read_jsonl(tiny_dataset / "train.jsonl"), read_jsonl(tiny_dataset / "val.jsonl"), cfg, "Compress the text.",
                    3, tmp_path / "ck", tmp_path / "state", 5)
    summary = json.loads((tmp_path / "ck/summary.json").read_text())
    lengths = {r["length"] for r in summary["heldout_passkey"]}
    assert len(lengths) == 3 and len(calls) == 3   # stages 32, 64 and the data's longest: each scored once
    evals = {(e["kind"], int(e["length"] or 0)): float(e["value"]) for e in csv_rows(tmp_path / "ck/eval_log.csv") if e["kind"].startswith("passkey")}
    final = {r["length"]: r["acc"] for r in summary["heldout_passkey"] if r["depth"] == "all"}
    assert all(final[length] == v for (kind, length), v in evals.items())   # the reused scores are the check's


def csv_rows(path):
    import csv

    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_chunk_wise_checkpoint_trains_and_answers_at_every_ratio(tmp_path, tiny_dataset, model_dir):
    """gist.chunked end to end on the real model: scripts/train_gist.py --chunk-tokens trains one checkpoint over two
    chunk sizes (reconstruction and continuation through the chunk gists included), and the runner answers as
    gist4per16 and gist4per32 from it: a cache of 4 positions per chunk, the ratio its row reports."""
    from gistpoc.evaluate.runner import run_method
    from gistpoc.model import load_model
    from gistpoc.utils import read_jsonl

    cfg = _cfg(max_steps=3)
    cfg["curriculum"]["stages"] = [64]
    cfg["aux"] = {**cfg["aux"], "cue_continuation": 0.5, "cue_tokens": 4, "continuation_tokens": 8, "continuation": 0.5, "next_tokens": 8}
    subprocess.run(_cmd(tiny_dataset, tmp_path / "ck", tmp_path / "state", cfg) + ["--chunk-tokens", "16", "32"], check=True, cwd=ROOT)
    summary = json.loads((tmp_path / "ck/summary.json").read_text())
    assert summary["chunk_tokens"] == [16, 32] and summary["steps"] == 3
    import csv

    rows = list(csv.DictReader(open(tmp_path / "ck/train_log.csv")))
    assert any(float(r["aux_loss"]) > 0 for r in rows)
    loaded = load_model({"device": "cpu", "dtype": "float32", "attn_implementation": "eager"}, model_dir, n_gist=4, adapter_dir=tmp_path / "ck")
    recs = [r for r in read_jsonl(tiny_dataset / "val.jsonl") if r["qtype"] in ("passkey", "factual")][:4]
    whole = run_method("gist4", loaded, recs[:1], "Compress the text.", 4, warmup_items=0)[0]
    assert whole["compression_ratio"] == pytest.approx(whole["context_tokens"] / 4)
    per_position = whole["gist_kv_bytes"] // 4
    for chunk in (16, 32):
        out = run_method(f"gist4per{chunk}", loaded, recs, "Compress the text.", 4, warmup_items=0)
        assert [r["status"] for r in out] == ["ok"] * len(recs)
        for r in out:
            positions = 4 * -(-r["context_tokens"] // chunk)
            assert r["compression_ratio"] == pytest.approx(r["context_tokens"] / positions)
            assert r["gist_kv_bytes"] == positions * per_position and r["method"] == f"gist4per{chunk}"
    # the compiled engine answers from the chunk gists' cache as the eager loop does
    compiled = run_method("gist4per16", loaded, recs, "Compress the text.", 4, warmup_items=0, engine="compiled")
    assert [r["prediction"] for r in compiled] == [r["prediction"] for r in run_method("gist4per16", loaded, recs, "Compress the text.", 4, warmup_items=0)]
