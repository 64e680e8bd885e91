"""The gist training loop: LoRA on q/k/v/o + gist embeddings, masked loss on answers, resumable.

Plain PyTorch (nanoGPT style) so a reader can hold it in their head:
schedule -> micro-batches -> masked forward -> accumulate -> clip -> step -> log -> checkpoint.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from gistpoc.gist.cache import answer_from_cache, compress_context
from gistpoc.gist.collator import GistDataCollator, forward_masked
from gistpoc.gist.template import encode_question, prompt_template
from gistpoc.train.examples import build_schedule, doc_example, group_by_doc, n_optimizer_steps, to_example
from gistpoc.utils import host_environment, is_oom, stable_hash, write_json

log = logging.getLogger(__name__)

OOM_HELP = (
    "out of memory. Remedies (design failure mode 4): train.gradient_checkpointing: true; "
    "lower data.max_tokens (e.g. 4096); train.batch_size: 1 with a larger train.grad_accum; "
    "train.optimizer: adamw8bit; model.quantization: nf4."
)


class TrainingDiverged(RuntimeError):
    """NaN/inf loss or exploding gist embeddings (design failure mode 2)."""


@dataclass
class TrainResult:
    steps: int
    final_loss: float
    resumed_from: int


def apply_lora(model, gist_ids: list[int], cfg: dict):
    """Wrap ``model`` with LoRA on the attention projections plus the chosen embedding training."""
    from peft import LoraConfig, get_peft_model

    kwargs = dict(
        r=cfg["lora_r"],
        lora_alpha=cfg["lora_alpha"],
        lora_dropout=cfg["lora_dropout"],
        target_modules=list(cfg["target_modules"]),
        task_type="CAUSAL_LM",
    )
    if cfg["embedding_training"] == "modules_to_save":
        kwargs["modules_to_save"] = ["embed_tokens", "lm_head"]
    else:
        kwargs["trainable_token_indices"] = {"embed_tokens": list(gist_ids)}
    if getattr(model, "is_loaded_in_4bit", False):
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.get("gradient_checkpointing", False))
    elif cfg.get("gradient_checkpointing"):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    return get_peft_model(model, LoraConfig(**kwargs))


def param_groups(model, cfg: dict) -> list[dict]:
    lora, embed = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (lora if "lora_" in name else embed).append(p)
    groups = [{"params": lora, "lr": cfg["lr_lora"], "name": "lora"}]
    if embed:
        groups.append({"params": embed, "lr": cfg["lr_embed"], "name": "embed"})
    return groups


def make_optimizer(groups, cfg: dict):
    if cfg.get("optimizer") == "adamw8bit":
        import bitsandbytes as bnb

        return bnb.optim.AdamW8bit(groups, weight_decay=0.0)
    return torch.optim.AdamW(groups, weight_decay=0.0)


def lr_factor(step: int, warmup: int, total: int, schedule: str) -> float:
    """Linear warm-up, then constant or cosine decay to 10 % of the peak."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant" or total <= warmup:
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def gist_embedding_norms(model, gist_ids: list[int]) -> torch.Tensor:
    emb = model.get_input_embeddings()
    with torch.no_grad():
        dev = next(model.parameters()).device
        return emb(torch.tensor(gist_ids, device=dev)).float().norm(dim=-1).cpu()


@torch.no_grad()
def passkey_accuracy(model, tokenizer, instruction: str, gist_ids: list[int], eos_ids: list[int], records: list[dict], n_docs: int) -> float:
    """Held-out passkey retrieval from the gist cache alone (exact match), on the first ``n_docs`` docs."""
    template = prompt_template(tokenizer, instruction)
    model.eval()
    hits = total = 0
    for recs in list(group_by_doc(records).values())[:n_docs]:
        pk = next(r for r in recs if r["qtype"] == "passkey")
        row = doc_example(tokenizer, template, gist_ids, [pk], qtypes=("passkey",))
        cache = compress_context(model, row["prefix_ids"], row["gist_start"], row["gist_end"])
        gen = answer_from_cache(model, cache, encode_question(tokenizer, template, pk["question"]), eos_ids, 8)
        hits += int(tokenizer.decode(gen.token_ids, skip_special_tokens=True).strip() == pk["answer"])
        total += 1
    model.train()
    return hits / total if total else float("nan")


@torch.no_grad()
def validation_loss(model, tokenizer, instruction: str, gist_ids: list[int], records: list[dict]) -> float:
    template = prompt_template(tokenizer, instruction)
    collate = GistDataCollator(tokenizer.pad_token_id)
    model.eval()
    losses = []
    for recs in group_by_doc(records).values():
        out = forward_masked(model, collate([to_example(doc_example(tokenizer, template, gist_ids, recs))]))
        losses.append(float(out.loss))
    model.train()
    return sum(losses) / len(losses) if losses else float("nan")


def _save_state(state_dir: Path, model, optimizer, step: int, rows: list[dict], evals: list[dict], fingerprint: str) -> None:
    """Resumable state, written to a temp dir and swapped in (never half-written)."""
    tmp = state_dir.with_name(state_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp / "adapter", save_embedding_layers=False)
    torch.save({"optimizer": optimizer.state_dict(), "step": step, "rng": torch.get_rng_state()}, tmp / "trainer.pt")
    write_json(tmp / "progress.json", {"step": step, "fingerprint": fingerprint, "rows": rows, "evals": evals})
    old = state_dir.with_name(state_dir.name + ".old")
    if state_dir.exists():
        state_dir.rename(old)
    tmp.rename(state_dir)
    shutil.rmtree(old, ignore_errors=True)


def _write_csv(path: Path, rows: list[dict]) -> None:
    if not rows:
        path.write_text("")
        return
    keys = list(rows[0])
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)


def train_gist(loaded, train_records: list[dict], val_records: list[dict], cfg: dict, instruction: str, seed: int, out_dir: Path, state_dir: Path, dataset_cache: Path) -> TrainResult:
    """Train one gist-N checkpoint; resumes from ``state_dir`` when its fingerprint matches."""
    import datasets

    tokenizer, gist_ids, eos_ids = loaded.tokenizer, loaded.gist_ids, loaded.eos_ids
    fingerprint = stable_hash({"cfg": cfg, "instruction": instruction, "seed": seed, "n_gist": len(gist_ids), "records": [r["id"] for r in train_records]})
    table_dir = dataset_cache / fingerprint
    if not (table_dir / "dataset_info.json").exists():
        rows = build_schedule(tokenizer, instruction, gist_ids, train_records, cfg, seed)
        datasets.Dataset.from_list(rows).save_to_disk(str(table_dir))
    table = datasets.load_from_disk(str(table_dir))  # memory-mapped Arrow
    total_steps = n_optimizer_steps(len(table), cfg["batch_size"], cfg["grad_accum"], cfg.get("max_steps", 0))
    log.info("gist-%d: %d sequences, %d optimizer steps", len(gist_ids), len(table), total_steps)

    torch.manual_seed(seed)
    model = apply_lora(loaded.model, gist_ids, cfg)
    model.train()
    optimizer = make_optimizer(param_groups(model, cfg), cfg)
    rows: list[dict] = []
    evals: list[dict] = []
    start_step = 0
    if (state_dir / "progress.json").exists():
        progress = json.loads((state_dir / "progress.json").read_text())
        if progress["fingerprint"] == fingerprint:
            from peft import set_peft_model_state_dict
            from safetensors.torch import load_file

            adapter = next((state_dir / "adapter").glob("adapter_model.*"))
            set_peft_model_state_dict(model, load_file(str(adapter)) if adapter.suffix == ".safetensors" else torch.load(adapter))
            trainer = torch.load(state_dir / "trainer.pt", weights_only=False)
            optimizer.load_state_dict(trainer["optimizer"])
            torch.set_rng_state(trainer["rng"])
            start_step, rows, evals = progress["step"], progress["rows"], progress["evals"]
            log.info("resuming gist-%d from step %d (%s)", len(gist_ids), start_step, state_dir)
        else:
            log.info("state in %s belongs to another configuration: starting over", state_dir)
    collate = GistDataCollator(tokenizer.pad_token_id)
    per_step = cfg["batch_size"] * cfg["grad_accum"]
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    last_loss = float("nan")
    epoch_len = max(1, math.ceil(len(table) / cfg.get("epochs", 1)))
    try:
        for step in range(start_step, total_steps):
            t0 = time.perf_counter()
            factor = lr_factor(step, cfg["warmup_steps"], total_steps, cfg.get("lr_schedule", "cosine"))
            for g, base in zip(optimizer.param_groups, base_lrs):
                g["lr"] = base * factor
            loss_sum, n_tokens, n_micro = 0.0, 0, 0
            for m in range(cfg["grad_accum"]):
                lo = step * per_step + m * cfg["batch_size"]
                chunk = [to_example(table[i]) for i in range(lo, min(lo + cfg["batch_size"], len(table)))]
                if not chunk:
                    break
                batch = collate(chunk)
                out = forward_masked(model, batch)
                loss = out.loss
                if not torch.isfinite(loss):
                    raise TrainingDiverged(
                        f"gist-{len(gist_ids)}: loss is {float(loss)} at step {step}. Lower train.lr_embed (e.g. 1e-5), "
                        "raise train.warmup_steps (e.g. 200), keep train.max_grad_norm: 1.0 (design failure mode 2). "
                        f"The last good state is kept in {state_dir}."
                    )
                (loss / cfg["grad_accum"]).backward()
                loss_sum += float(loss.detach())
                n_tokens += int(batch["input_ids"].numel())
                n_micro += 1
            grad_norm = float(torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], cfg["max_grad_norm"]))
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            norms = gist_embedding_norms(model, gist_ids)
            if not torch.isfinite(norms).all() or norms.max() > cfg["max_embed_norm"]:
                raise TrainingDiverged(
                    f"gist-{len(gist_ids)}: gist embedding norm {float(norms.max()):.1f} exceeds train.max_embed_norm "
                    f"({cfg['max_embed_norm']}) at step {step}. Lower train.lr_embed / raise warm-up (design failure mode 2). "
                    f"The last good state is kept in {state_dir}."
                )
            dt = time.perf_counter() - t0
            last_loss = loss_sum / max(1, n_micro)
            rows.append({
                "step": step + 1,
                "epoch": round((step + 1) * per_step / epoch_len, 3),
                "loss": round(last_loss, 6),
                "lr_lora": optimizer.param_groups[0]["lr"],
                "lr_embed": optimizer.param_groups[-1]["lr"],
                "grad_norm": round(grad_norm, 6),
                "gist_norm_mean": round(float(norms.mean()), 5),
                "gist_norm_max": round(float(norms.max()), 5),
                "tokens_per_s": round(n_tokens / dt, 1),
            })
            log.info("step %d/%d loss %.4f grad %.3f gist-norm %.3f %.0f tok/s", step + 1, total_steps, last_loss, grad_norm, float(norms.max()), n_tokens / dt)
            done = step + 1
            if cfg.get("eval_every_steps") and (done % cfg["eval_every_steps"] == 0 or done == total_steps):
                acc = passkey_accuracy(model, tokenizer, instruction, gist_ids, eos_ids, val_records, cfg.get("eval_passkey_docs", 4))
                evals.append({"step": done, "kind": "passkey_acc", "value": acc})
                log.info("step %d held-out passkey accuracy %.3f", done, acc)
            boundary = (done * per_step) // epoch_len != (step * per_step) // epoch_len
            if boundary or done == total_steps:
                vloss = validation_loss(model, tokenizer, instruction, gist_ids, val_records)
                evals.append({"step": done, "kind": "val_loss", "value": vloss})
                log.info("step %d validation loss %.4f", done, vloss)
            if done % cfg["checkpoint_every_steps"] == 0 or done == total_steps:
                _save_state(state_dir, model, optimizer, done, rows, evals, fingerprint)
    except (RuntimeError, MemoryError) as err:
        if is_oom(err):
            kind = "CUDA " if isinstance(err, torch.cuda.OutOfMemoryError) else ""
            raise RuntimeError(f"gist-{len(gist_ids)}: {kind}{OOM_HELP}") from err
        raise

    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp, save_embedding_layers=False)
    tokenizer.save_pretrained(tmp)
    _write_csv(tmp / "train_log.csv", rows)
    _write_csv(tmp / "eval_log.csv", evals)
    write_json(tmp / "summary.json", {
        "n_gist": len(gist_ids),
        "steps": total_steps,
        "sequences": len(table),
        "first_loss": rows[0]["loss"] if rows else None,
        "final_loss": rows[-1]["loss"] if rows else None,
        "resumed_from_step": start_step,
        "config": cfg,
        "instruction": instruction,
        "environment": host_environment(),
    })
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return TrainResult(total_steps, last_loss, start_step)
