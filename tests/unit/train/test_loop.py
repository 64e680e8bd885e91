"""The training loop's pieces (gistpoc.train.loop.Trainer), each alone on the real model: setup's fingerprint, one
step, the held-out check, the resumable state, the checkpoint. tests/unit/train/test_train.py runs them together."""

from __future__ import annotations

import json

import pytest
import torch

from tests.unit.train.test_train import _cfg, tiny_dataset  # noqa: F401  (tiny_dataset is a fixture)

pytestmark = pytest.mark.slow


def _trainer(data, model_dir, volume=None, **over):
    from gistpoc.model import load_model
    from gistpoc.train.loop import Trainer
    from gistpoc.utils import read_jsonl

    loaded = load_model({"device": "cpu", "dtype": "float32", "attn_implementation": "eager", "quantization": "none"}, model_dir,
                        n_gist=4, trainable=True)
    return Trainer(loaded, read_jsonl(data / "train.jsonl"), read_jsonl(data / "val.jsonl"), _cfg(max_steps=4, **over), "Compress the text.",
                   3, 5, volume=volume)


def _trainable(t) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in t.model.named_parameters() if v.requires_grad}


def test_setup_fingerprint_follows_config_and_data(tiny_dataset, model_dir):  # noqa: F811
    a, b = _trainer(tiny_dataset, model_dir), _trainer(tiny_dataset, model_dir)
    assert a.fingerprint == b.fingerprint and a.step_no == 0 and a.run_end() == 4
    assert _trainer(tiny_dataset, model_dir, lr_lora=1e-3).fingerprint != a.fingerprint
    assert a.curriculum.length == 32 and set(a.heldout) >= {32, 64}   # stages and the data's longest length


def test_text_at_volume_joins_the_window_pool_only(tiny_dataset, model_dir, real_text):  # noqa: F811
    """Stage 1's text at volume feeds the passkey / continuation windows, not the documents with questions, and a
    different volume is a different run (no resume across it)."""
    plain = _trainer(tiny_dataset, model_dir)
    t = _trainer(tiny_dataset, model_dir, volume={"debian:demo:a.rst": real_text[:3000], "debian:demo:b.rst": real_text[3000:6000]})
    assert t.doc_ids == plain.doc_ids and t.fingerprint != plain.fingerprint
    assert t.stream.pool.n_tokens > plain.stream.pool.n_tokens
    assert {d for _, _, d in t.stream.pool.doc_spans} == set(plain.doc_ids) | {"debian:demo:a.rst", "debian:demo:b.rst"}
    assert _trainer(tiny_dataset, model_dir, volume={"debian:demo:a.rst": real_text[:3001]}).fingerprint != t.fingerprint


def test_step_updates_the_trainable_weights_and_logs_a_row(tiny_dataset, model_dir):  # noqa: F811
    t = _trainer(tiny_dataset, model_dir)
    before = _trainable(t)
    row = t.step()
    after = _trainable(t)
    assert t.step_no == 1 and t.rows == [row] and row["step"] == 1 and row["loss"] > 0
    assert set(row) >= {"loss", "aux_loss", "next_loss", "kl", "grad_norm", "gist_norm_max", "passkey_microbatches"}
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_step_stops_on_an_exploding_gist_embedding(tiny_dataset, model_dir):  # noqa: F811
    from gistpoc.train.loop import TrainingDiverged

    t = _trainer(tiny_dataset, model_dir, max_embed_norm=1e-3)
    with pytest.raises(TrainingDiverged, match="max_embed_norm"):
        t.step("results/state/x")


def test_a_non_finite_gradient_is_skipped_then_stops_the_run(tiny_dataset, model_dir):  # noqa: F811
    """Finite losses, a NaN gradient (as the content run's chunked stage 1 had at step 82): the step changes nothing
    and is logged as skipped; more than train.skip_nonfinite_steps in a row stop the run; a good step resets the count."""
    from gistpoc.train.loop import TrainingDiverged

    t = _trainer(tiny_dataset, model_dir, skip_nonfinite_steps=1)
    name, param = next((k, v) for k, v in t.model.named_parameters() if v.requires_grad and "lora_B" in k)
    hook = param.register_hook(lambda g: g * float("nan"))
    before = _trainable(t)
    row = t.step("results/state/x")
    assert row["skipped"] == 1 and t.step_no == 1 and row["loss"] == row["loss"]   # the loss was finite
    assert all(torch.equal(before[k], v) for k, v in _trainable(t).items()), "a skipped step must not change the weights"
    assert not t.optimizer.state, "a skipped step must not touch the optimizer's moments"
    with pytest.raises(TrainingDiverged, match="non-finite .* 2 steps in a row"):
        t.step("results/state/x")
    hook.remove()
    row = t.step("results/state/x")
    assert row["skipped"] == 0 and t.skipped_in_a_row == 0 and not torch.equal(before[name], dict(t.model.named_parameters())[name])


def test_check_scores_held_out_windows_and_promotes_at_the_gate(tiny_dataset, model_dir):  # noqa: F811
    t = _trainer(tiny_dataset, model_dir)
    t.curriculum.promote_at = 0.0   # any accuracy passes: the gate must promote to the next stage
    hits: dict[int, list[float]] = {}
    new = t.check(hits)
    kinds = [e["kind"] for e in new]
    assert kinds[:2] == ["passkey_acc", "passkey_acc_longest"] and "promotion" in kinds and kinds[-1] == "val_loss"
    assert t.curriculum.length == 64 and 32 in hits and t.evals == new


def test_state_resumes_only_for_the_same_run(tmp_path, tiny_dataset, model_dir):  # noqa: F811
    t = _trainer(tiny_dataset, model_dir)
    t.step()
    t.save_state(tmp_path / "state", elapsed=1.5)
    same = _trainer(tiny_dataset, model_dir)
    assert same.resume(tmp_path / "state") and same.step_no == 1 and same.rows == t.rows and same.elapsed_before == 1.5
    assert all(torch.equal(v, _trainable(same)[k]) for k, v in _trainable(t).items())
    other = _trainer(tiny_dataset, model_dir, lr_lora=1e-3)
    assert not other.resume(tmp_path / "state") and other.step_no == 0
    assert not _trainer(tiny_dataset, model_dir).resume(tmp_path / "nothing")


def test_write_checkpoint_swaps_in_a_complete_folder(tmp_path, tiny_dataset, model_dir):  # noqa: F811
    t = _trainer(tiny_dataset, model_dir)
    t.step()
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck/stale.txt").write_text("an older checkpoint's file")
    t.write_checkpoint(tmp_path / "ck", "max_steps", t.final_heldout({}))
    summary = json.loads((tmp_path / "ck/summary.json").read_text())
    assert summary["steps"] == 1 and summary["stopped_by"] == "max_steps" and summary["fingerprint"] == t.fingerprint
    assert (tmp_path / "ck/adapter_model.safetensors").exists() and not (tmp_path / "ck/stale.txt").exists()
    assert {r["length"] for r in summary["heldout_passkey"]} == set(t.heldout)
