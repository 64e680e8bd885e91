"""The gist training loop: LoRA (or full fine-tuning) + gist embeddings, a step budget, a gated curriculum.

Plain PyTorch (nanoGPT style) so a reader can hold it in their head:
stream (passkey windows | documents) -> masked forward -> accumulate -> clip -> step -> log
-> every k steps: held-out passkey accuracy -> curriculum gate -> checkpoint.
"""

from __future__ import annotations

import copy
import csv
import json
import logging
import math
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from gistpoc.codehash import code_hash
from gistpoc.evaluate.passkey import DEPTH_BINS, passkey_correct
from gistpoc.gist.collator import GistDataCollator, forward_masked
from gistpoc.gist.template import prompt_template
from gistpoc.train import pretrained
from gistpoc.train.examples import doc_example, group_by_doc, strip_passkey, to_example
from gistpoc.train.stream import Curriculum, PasskeyStream, TextPool, chunk_in_turn, cue_spans, effective_stages, heldout_windows
from gistpoc.utils import host_environment, is_oom, records_hash, stable_hash, write_json

log = logging.getLogger(__name__)

# the resume fingerprint's code: this module and every gistpoc module it imports (gistpoc.codehash)
TRAIN_CODE = "gistpoc/train/loop.py"

OOM_HELP = (
    "out of memory. Remedies (design failure mode 4): train.gradient_checkpointing: true; "
    "lower data.max_tokens (e.g. 4096) or the last train.curriculum.stages; train.batch_size: 1 with a larger "
    "train.grad_accum; train.optimizer: adamw8bit; model.quantization: nf4."
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

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg["gradient_checkpointing"])
    elif cfg["gradient_checkpointing"]:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    return get_peft_model(model, LoraConfig(**kwargs))


def prepare_trainable(model, gist_ids: list[int], cfg: dict):
    """``train.method``: lora (LoRA on the attention projections + gist rows) or full (every weight trains)."""
    if cfg["method"] == "lora":
        return apply_lora(model, gist_ids, cfg)
    if getattr(model, "is_loaded_in_4bit", False):
        raise ValueError("train.method: full cannot train 4-bit weights; use train.method: lora (QLoRA) with model.quantization: nf4")
    model.requires_grad_(True)
    if cfg["gradient_checkpointing"]:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


def param_groups(model, cfg: dict) -> list[dict]:
    """Two learning rates: ``lr_lora`` for the adapted weights (LoRA matrices, or every base weight with
    method full) and ``lr_embed`` for the embeddings (the gist rows; the whole table with method full)."""
    body, embed = [], []
    emb_ids = {id(p) for p in model.get_input_embeddings().parameters()}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_body = "lora_" in name if cfg["method"] == "lora" else id(p) not in emb_ids
        (body if is_body else embed).append(p)
    groups = [{"params": body, "lr": cfg["lr_lora"], "name": "body"}]
    if embed:
        groups.append({"params": embed, "lr": cfg["lr_embed"], "name": "embed"})
    return groups


def make_optimizer(groups, cfg: dict):
    if cfg["optimizer"] == "adamw8bit":
        import bitsandbytes as bnb

        return bnb.optim.AdamW8bit(groups, weight_decay=0.0)
    return torch.optim.AdamW(groups, weight_decay=0.0)


def lr_factor(step: int, warmup: int, total: int, schedule: str, decay_fraction: float = 0.2, min_factor: float = 0.1,
              gate_step: int | None = None) -> float:
    """Multiplier of the peak learning rate at optimizer step ``step`` (0-based) of ``total``.

    Linear warm-up over ``warmup`` steps, then
    - ``constant``: 1;
    - ``cosine`` (the design's): cosine decay to ``min_factor`` over the remaining steps;
    - ``wsd`` (warm-up, stable, decay): 1 until the last ``decay_fraction`` of the run, then linear to
      ``min_factor``, but never before the curriculum's last stage has passed its gate (``gate_step``,
      None = not yet): decaying before the plateau is left stops the learning (issue table).
    """
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        if total <= warmup:
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * progress))
    if gate_step is None:
        return 1.0
    start = max(round(total * (1 - decay_fraction)), gate_step, warmup)
    if step < start or total <= start:
        return 1.0
    return 1.0 - (1 - min_factor) * (step - start) / (total - start)


def gist_embedding_norms(model, gist_ids: list[int]) -> torch.Tensor:
    emb = model.get_input_embeddings()
    with torch.no_grad():
        dev = next(model.parameters()).device
        return emb(torch.tensor(gist_ids, device=dev)).float().norm(dim=-1).cpu()


def answer_text(tokenizer, ids: list[int], eos_ids: list[int]) -> str:
    """Decode generated ids up to the first end-of-turn id."""
    stop = next((i for i, t in enumerate(ids) if t in eos_ids), len(ids))
    return tokenizer.decode(ids[:stop], skip_special_tokens=True).strip()


@torch.no_grad()
def passkey_hits(model, tokenizer, rows: list[dict], eos_ids: list[int], batch_size: int) -> list[float]:
    """Held-out passkey retrieval through the gist span, scored by the evaluation's ``passkey_correct``.

    One masked forward per batch with the key as the teacher-forced answer: the arg-max at each answer
    position is what greedy decoding from the gist cache produces as long as the previous tokens agree,
    so the decoded arg-max string recovers the key exactly when greedy decoding does.
    """
    collate = GistDataCollator(tokenizer.pad_token_id)
    was_training = model.training
    model.eval()
    hits = []
    for i in range(0, len(rows), batch_size):
        chunk = rows[i : i + batch_size]
        out = forward_masked(model, collate([to_example(r) for r in chunk]))
        pred = out.label_logits.argmax(-1)
        for b, r in enumerate(chunk):
            ids = pred[b][out.label_mask[b]].tolist()
            hits.append(passkey_correct(answer_text(tokenizer, ids, eos_ids), r["passkey"]))
    model.train(was_training)
    return hits


def accuracy_table(rows: list[dict], hits: list[float], length: int) -> list[dict]:
    """Held-out accuracy at one length, overall and per depth bin."""
    out = [{"length": length, "depth": "all", "n": len(hits), "acc": sum(hits) / len(hits) if hits else float("nan")}]
    for lo, hi, name in DEPTH_BINS:
        sel = [h for r, h in zip(rows, hits) if lo <= r["depth"] < hi]
        if sel:
            out.append({"length": length, "depth": name, "n": len(sel), "acc": sum(sel) / len(sel)})
    return out


@torch.no_grad()
def validation_loss(model, doc_rows: list[dict], pad_id: int) -> float:
    collate = GistDataCollator(pad_id)
    was_training = model.training
    model.eval()
    losses = [float(forward_masked(model, collate([to_example(r)])).loss) for r in doc_rows]
    model.train(was_training)
    return sum(losses) / len(losses) if losses else float("nan")


def trainable_state(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu() for n, p in model.named_parameters() if p.requires_grad}


def _save_state(state_dir: Path, model, optimizer, step: int, progress: dict) -> None:
    """Resumable state (trainable weights, optimizer, progress), written to a temp dir and swapped in."""
    tmp = state_dir.with_name(state_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    torch.save({"weights": trainable_state(model), "optimizer": optimizer.state_dict(), "step": step, "rng": torch.get_rng_state()}, tmp / "trainer.pt")
    write_json(tmp / "progress.json", {**progress, "step": step})
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


class Trainer:
    """One gist-N training run, in the fixed order ``train_gist`` calls its pieces: setup (the constructor: data,
    stream, curriculum, held-out windows, fingerprint, model, optimizer), ``resume``, then ``step`` after ``step``
    with ``check`` (held-out gate, validation loss) and ``save_state`` every k steps, then ``final_heldout`` and
    ``write_checkpoint``. Each piece is usable alone (tests/unit/train/test_loop.py)."""

    def __init__(self, loaded, train_records: list[dict], val_records: list[dict], cfg: dict, instruction: str, seed: int,
                 passkey_digits: int, model_cfg: dict | None = None, init_adapter: Path | None = None, warm_start: bool = False,
                 chunk_sizes: tuple[int, ...] = (), volume: dict[str, str] | None = None):
        self.loaded, self.cfg, self.instruction, self.seed, self.passkey_digits = loaded, cfg, instruction, seed, passkey_digits
        tokenizer, gist_ids = loaded.tokenizer, loaded.gist_ids
        self.n = n = len(gist_ids)
        self.template = template = prompt_template(tokenizer, instruction)
        self.docs = group_by_doc(train_records)
        self.doc_ids = list(self.docs)
        self.chunk_sizes = chunk_sizes = tuple(chunk_sizes)
        self._doc_rows: dict[tuple[str, int], dict] = {}
        self.val_docs = val_docs = group_by_doc(val_records)
        self.val_rows = [doc_example(tokenizer, template, gist_ids, recs, chunk_tokens=chunk_in_turn(chunk_sizes, i))
                         for i, recs in enumerate(list(val_docs.values())[: cfg["eval_docs"]])]
        # the passkey stream draws from training documents only (and stage 1's text at volume, never documents with
        # questions: results/data/volume); the gate's held-out windows from validation ones
        volume = volume or {}
        # what stage 1 read besides the training documents (summary.json; the adapter's provenance repeats it)
        self.volume_info = {"texts": len(volume), "sha": stable_hash(volume)} if volume else None
        pool = TextPool(tokenizer, [strip_passkey(recs[0]) for recs in self.docs.values()] + list(volume.values()), self.doc_ids + list(volume))
        val_pool = TextPool(tokenizer, [strip_passkey(recs[0]) for recs in val_docs.values()], list(val_docs))
        self.stream = PasskeyStream(tokenizer, template, gist_ids, pool, passkey_digits, seed, tuple(cfg["passkey_wordings"]), chunk_sizes)
        cur_cfg = cfg["curriculum"]
        max_len = max(r["context_tokens"] for r in train_records)
        self.curriculum = Curriculum(effective_stages(cur_cfg["stages"], max_len), cur_cfg["promote_at"])
        # held-out windows at every stage and at the data's longest length (does a 4k curriculum carry to 8k?)
        lengths = sorted(set(self.curriculum.stages) | {max_len})
        self.heldout = heldout_windows(tokenizer, template, gist_ids, val_pool, lengths, cur_cfg["heldout_windows"], passkey_digits, seed,
                                       chunk_sizes)
        self.init_info = None
        if init_adapter is not None:
            prov = pretrained.check(init_adapter, loaded, cfg, warm_start=warm_start)
            self.init_info = {"path": str(init_adapter), "adapter_sha256": pretrained.file_hash(init_adapter), "steps": prov["steps"],
                              "commit": prov["commit"], "n_gist": prov["n_gist"], "warm_start": warm_start}
        self.fingerprint = stable_hash({
            "init": self.init_info, "cfg": cfg, "instruction": instruction, "seed": seed, "n_gist": n, "digits": passkey_digits,
            "chunks": list(chunk_sizes), "train": records_hash(train_records), "volume": self.volume_info, "val": records_hash(val_records), "model": model_cfg,
            "template": [template.head, template.q_prefix, template.q_suffix, template.answer_end], "code": code_hash(TRAIN_CODE)})
        log.info("gist-%d: %d training documents and %d texts at volume (%d tokens of passkey-window text), %d optimizer steps, "
                 "curriculum %s", n, len(self.doc_ids), len(volume), pool.n_tokens, cfg["max_steps"], self.curriculum.stages)

        torch.manual_seed(seed)
        # the objectives through the gist bottleneck besides the answers, each with its weight (train.aux): reconstruction
        # of a context span after a cue (cue_continuation), continuation of the text after a window (continuation), KL to
        # the base model reading the context (self_distill)
        self.w_cue, self.w_kl, self.w_next = cfg["aux"]["cue_continuation"], cfg["aux"]["self_distill"], cfg["aux"]["continuation"]
        self.teacher = None
        if self.w_kl > 0 and cfg["method"] == "full":
            self.teacher = copy.deepcopy(loaded.model).eval().requires_grad_(False)  # the untouched base model
        self.model = prepare_trainable(loaded.model, gist_ids, cfg)
        if init_adapter is not None:
            pretrained.load_weights(self.model, init_adapter, n if warm_start else None)
            log.info("gist-%d starts from the pre-trained adapter %s (%d stage-1 steps, commit %s)", n, init_adapter,
                     self.init_info["steps"], self.init_info["commit"])
        self.model.train()
        self.optimizer = make_optimizer(param_groups(self.model, cfg), cfg)
        self.base_lrs = [g["lr"] for g in self.optimizer.param_groups]
        self.collate = GistDataCollator(tokenizer.pad_token_id, teacher_mask=self.w_kl > 0)
        self.rows: list[dict] = []    # one per optimizer step (train_log.csv)
        self.evals: list[dict] = []   # held-out checks and validation losses (eval_log.csv)
        self.step_no = self.start_step = 0
        self.elapsed_before = 0.0     # training seconds of earlier (interrupted) attempts, for train.time_limit_minutes
        self.skipped_in_a_row = self.skipped_total = 0   # steps skipped for a non-finite gradient (train.skip_nonfinite_steps)

    def doc_row(self, doc_id: str, chunk: int) -> dict:
        """A training document's tokenised row in one layout (made when first drawn)."""
        if (doc_id, chunk) not in self._doc_rows:
            self._doc_rows[doc_id, chunk] = doc_example(self.loaded.tokenizer, self.template, self.loaded.gist_ids, self.docs[doc_id],
                                                        chunk_tokens=chunk)
        return self._doc_rows[doc_id, chunk]

    def run_end(self) -> int:
        """max_steps, or fewer once the last stage has passed its gate and after_gate_steps is set."""
        after_gate = self.cfg["curriculum"]["after_gate_steps"]
        if after_gate and self.curriculum.final_gate_step is not None:
            return min(self.cfg["max_steps"], self.curriculum.final_gate_step + after_gate)
        return self.cfg["max_steps"]

    def resume(self, state_dir: Path) -> bool:
        """Continue from ``state_dir`` when its fingerprint is this run's; another run's state is left alone."""
        if not (state_dir / "progress.json").exists():
            return False
        progress = json.loads((state_dir / "progress.json").read_text())
        if progress["fingerprint"] != self.fingerprint:
            log.info("state in %s belongs to another configuration, data or code: starting over", state_dir)
            return False
        trainer = torch.load(state_dir / "trainer.pt", weights_only=False)
        missing = {name for name, p in self.model.named_parameters() if p.requires_grad} - set(trainer["weights"])
        if missing:
            raise RuntimeError(f"resumable state in {state_dir} lacks {sorted(missing)[:3]}: delete it to start over")
        self.model.load_state_dict(trainer["weights"], strict=False)
        self.optimizer.load_state_dict(trainer["optimizer"])
        torch.set_rng_state(trainer["rng"])
        self.step_no = self.start_step = progress["step"]
        self.rows, self.evals, self.elapsed_before = progress["rows"], progress["evals"], progress["elapsed_s"]
        self.curriculum = Curriculum.from_state(progress["curriculum"])
        log.info("resuming gist-%d from step %d in curriculum stage %d (%d tokens) (%s)", self.n, self.step_no, self.curriculum.stage,
                 self.curriculum.length, state_dir)
        return True

    def batch_rows(self, step: int, micro: int) -> tuple[list[dict], bool]:
        """Micro-batch ``micro`` of optimizer step ``step``: passkey windows or training documents (and which)."""
        cfg, stream = self.cfg, self.stream
        is_pk = stream.is_passkey(step, micro, cfg["passkey_share"])
        next_tokens = cfg["aux"]["next_tokens"] if self.w_next > 0 else 0
        if is_pk:
            return stream.windows(step, micro, cfg["batch_size"], self.curriculum.length, next_tokens), True
        docs = stream.documents(step, micro, cfg["batch_size"], self.doc_ids)
        return [self.doc_row(d, stream.chunk(step, micro, i)) for i, d in enumerate(docs)], False

    def micro_loss(self, step: int, micro: int) -> tuple[torch.Tensor, dict, int, bool]:
        """One micro-batch's weighted loss (answers + the aux objectives), its parts for the log, its tokens."""
        batch_rows, is_pk = self.batch_rows(step, micro)
        examples = [to_example(r) for r in batch_rows]
        for ex, r in zip(examples, batch_rows):
            if len(r.get("next_ids", [])) > 1:  # the first token is the cue, the rest is predicted from the gist
                ex.next_segments.append((r["next_ids"][:1], r["next_ids"][1:]))
        if self.w_cue > 0:
            rng = self.stream.rng(step, micro, "cue")
            for ex, r in zip(examples, batch_rows):
                ex.aux_segments += cue_spans(rng, r, self.cfg["aux"]["cue_tokens"], self.cfg["aux"]["continuation_tokens"],
                                             self.cfg["aux"]["cue_every_tokens"])
        batch = self.collate(examples)
        out = forward_masked(self.model, batch)
        loss, parts = out.loss, {"loss": float(out.loss.detach()), "aux_loss": 0.0, "next_loss": 0.0, "kl": 0.0}
        if out.aux_loss is not None:
            loss = loss + self.w_cue * out.aux_loss
            parts["aux_loss"] = float(out.aux_loss.detach())
        if out.next_loss is not None:
            loss = loss + self.w_next * out.next_loss
            parts["next_loss"] = float(out.next_loss.detach())
        if self.w_kl > 0 and not is_pk:
            kl = distill_kl(self.model, self.teacher, batch, out)
            loss = loss + self.w_kl * kl
            parts["kl"] = float(kl.detach())
        return loss, parts, int(batch["input_ids"].numel()), is_pk

    def step(self, state_dir: Path | str = "the state directory") -> dict:
        """One optimizer step (grad_accum micro-batches, clip, update); appends and returns its log row. A non-finite
        loss or an exploding gist embedding raises ``TrainingDiverged`` before the weights change / are kept."""
        cfg, step, n = self.cfg, self.step_no, self.n
        t0 = time.perf_counter()
        factor = lr_factor(step, cfg["warmup_steps"], self.run_end(), cfg["lr_schedule"], cfg["decay_fraction"], cfg["min_lr_factor"],
                           self.curriculum.final_gate_step)
        for g, base in zip(self.optimizer.param_groups, self.base_lrs):
            g["lr"] = base * factor
        sums = {"loss": 0.0, "aux_loss": 0.0, "next_loss": 0.0, "kl": 0.0}
        n_tokens = n_passkey = 0
        k = cfg["grad_accum"]
        for m in range(k):
            loss, parts, tokens, is_pk = self.micro_loss(step, m)
            if not torch.isfinite(loss):
                raise TrainingDiverged(
                    f"gist-{n}: loss is {float(loss)} at step {step}. Lower train.lr_embed (e.g. 1e-5), "
                    "raise train.warmup_steps (e.g. 200), keep train.max_grad_norm: 1.0 (design failure mode 2). "
                    f"The last good state is kept in {state_dir}."
                )
            (loss / k).backward()
            for key in sums:
                sums[key] += parts[key]
            n_tokens += tokens
            n_passkey += int(is_pk)
        grad_norm = float(torch.nn.utils.clip_grad_norm_([p for g in self.optimizer.param_groups for p in g["params"]], cfg["max_grad_norm"]))
        skipped = not math.isfinite(grad_norm)
        if skipped:  # every loss was finite, the backward pass was not: leave the weights and the optimizer as they are
            self.optimizer.zero_grad(set_to_none=True)
            self.skipped_in_a_row += 1
            if self.skipped_in_a_row > cfg["skip_nonfinite_steps"]:
                raise TrainingDiverged(
                    f"gist-{n}: the gradient is non-finite ({grad_norm}) at step {step}, {self.skipped_in_a_row} steps in a row, with "
                    f"every micro-batch loss finite (train.skip_nonfinite_steps: {cfg['skip_nonfinite_steps']} may be skipped). Lower "
                    "train.lr_lora / train.lr_embed, keep train.max_grad_norm: 1.0 (design failure mode 2); bench/nan_probe.py "
                    f"replays a step from the saved state. The last good state is kept in {state_dir}.")
            log.warning("gist-%d: step %d skipped: non-finite gradient (%s) with finite losses (%d in a row, %d in all)", n, step + 1,
                        grad_norm, self.skipped_in_a_row, self.skipped_total + 1)
            self.skipped_total += 1
        else:
            self.skipped_in_a_row = 0
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        norms = gist_embedding_norms(self.model, self.loaded.gist_ids)
        if not torch.isfinite(norms).all() or norms.max() > cfg["max_embed_norm"]:
            raise TrainingDiverged(
                f"gist-{n}: gist embedding norm {float(norms.max()):.1f} exceeds train.max_embed_norm "
                f"({cfg['max_embed_norm']}) at step {step}. Lower train.lr_embed / raise warm-up (design failure mode 2). "
                f"The last good state is kept in {state_dir}."
            )
        dt = time.perf_counter() - t0
        row = {
            "step": step + 1,
            "stage_tokens": self.curriculum.length,
            "passkey_microbatches": n_passkey,
            "loss": round(sums["loss"] / k, 6),
            "aux_loss": round(sums["aux_loss"] / k, 6),
            "next_loss": round(sums["next_loss"] / k, 6),
            "kl": round(sums["kl"] / k, 6),
            "lr_lora": self.optimizer.param_groups[0]["lr"],
            "lr_embed": self.optimizer.param_groups[-1]["lr"],
            "grad_norm": round(grad_norm, 6),
            "skipped": int(skipped),  # 1: a non-finite gradient, no update (train.skip_nonfinite_steps)
            "gist_norm_mean": round(float(norms.mean()), 5),
            "gist_norm_max": round(float(norms.max()), 5),
            "tokens_per_s": round(n_tokens / dt, 1),
        }
        self.rows.append(row)
        self.step_no = step + 1
        log.info("step %d/%d loss %.4f grad %.3f gist-norm %.3f stage %d %.0f tok/s", step + 1, self.run_end(), sums["loss"] / k, grad_norm,
                 float(norms.max()), self.curriculum.length, n_tokens / dt)
        return row

    def check(self, hits: dict[int, list[float]]) -> list[dict]:
        """The held-out passkey gate at the current step (``hits`` collects the per-window results by length) and the
        validation loss; appended to ``evals`` and returned."""
        done = self.step_no
        new = gate_check(self.model, self.loaded.tokenizer, self.curriculum, self.heldout, self.loaded.eos_ids, self.cfg["batch_size"],
                         done, self.n, hits)
        vloss = validation_loss(self.model, self.val_rows, self.loaded.tokenizer.pad_token_id)
        new.append({"step": done, "kind": "val_loss", "length": None, "value": vloss})
        log.info("step %d validation loss %.4f", done, vloss)
        self.evals += new
        return new

    def save_state(self, state_dir: Path, elapsed: float) -> None:
        _save_state(state_dir, self.model, self.optimizer, self.step_no, {"fingerprint": self.fingerprint, "rows": self.rows,
                                                                          "evals": self.evals, "curriculum": self.curriculum.state(),
                                                                          "elapsed_s": elapsed})

    def final_heldout(self, checked: dict[int, list[float]]) -> list[dict]:
        """Held-out accuracy per length and depth with the final weights (reusing the last step's check where it ran)."""
        out = []
        for length, wins in self.heldout.items():
            got = checked.get(length)
            out += accuracy_table(wins, got if got is not None else
                                  passkey_hits(self.model, self.loaded.tokenizer, wins, self.loaded.eos_ids, self.cfg["batch_size"]), length)
        for r in out:
            if r["depth"] == "all":
                log.info("gist-%d held-out passkey accuracy at %d tokens: %.3f", self.n, r["length"], r["acc"])
        return out

    def write_checkpoint(self, out_dir: Path, stopped_by: str, heldout_final: list[dict]) -> None:
        """The adapter (or model), tokenizer, logs and summary.json, written beside ``out_dir`` and swapped in."""
        tmp = out_dir.with_name(out_dir.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        if self.cfg["method"] == "lora":
            self.model.save_pretrained(tmp, save_embedding_layers=False)
        else:
            self.model.save_pretrained(tmp)
        self.loaded.tokenizer.save_pretrained(tmp)
        _write_csv(tmp / "train_log.csv", self.rows)
        _write_csv(tmp / "eval_log.csv", self.evals)
        write_json(tmp / "summary.json", {
            "n_gist": self.n,
            "chunk_tokens": list(self.chunk_sizes),  # the chunk-wise layout's chunk sizes it trained on ([] = whole document)
            "method": self.cfg["method"],
            "steps": self.step_no,
            "max_steps": self.cfg["max_steps"],
            "stopped_by": stopped_by,
            "skipped_steps": sum(r.get("skipped", 0) for r in self.rows),  # non-finite gradients not applied (train.skip_nonfinite_steps)
            "first_loss": self.rows[0]["loss"] if self.rows else None,
            "final_loss": self.rows[-1]["loss"] if self.rows else None,
            "resumed_from_step": self.start_step,
            "curriculum": self.curriculum.state(),
            "heldout_passkey": heldout_final,
            "training_documents": self.doc_ids,
            "validation_documents": list(self.val_docs),
            "volume": self.volume_info,
            "pretrained": self.init_info,
            "passkey_digits": self.passkey_digits,
            "fingerprint": self.fingerprint,
            "config": self.cfg,
            "instruction": self.instruction,
            "environment": host_environment(),
        })
        shutil.rmtree(out_dir, ignore_errors=True)
        tmp.rename(out_dir)


def train_gist(loaded, train_records: list[dict], val_records: list[dict], cfg: dict, instruction: str, seed: int,
               out_dir: Path, state_dir: Path, passkey_digits: int, model_cfg: dict | None = None,
               init_adapter: Path | None = None, warm_start: bool = False, chunk_sizes: tuple[int, ...] = (),
               volume: dict[str, str] | None = None) -> TrainResult:
    """Train one gist-N checkpoint for ``cfg["max_steps"]`` optimizer steps; resumes from ``state_dir`` when
    its fingerprint (config, data contents, code, model, starting adapter) matches, and removes that state once
    the checkpoint is written (a finished run leaves nothing that could stand in for a retrain).

    ``init_adapter``: a pre-trained (stage-1) adapter folder to start from, validated by ``pretrained.check``.
    For stage 1 itself, ``val_records`` are held-out training documents (``pretrained.heldout_split``), and
    ``warm_start`` seeds it from another N's stage-1 adapter (its LoRA and its first N gist rows).
    ``chunk_sizes``: the chunk-wise layout (N gists per chunk), every row's chunk size drawn from these.
    ``volume``: stage 1's text at volume (doc id -> text), joined to the training documents in the window pool only.

    The order, nanoGPT style: setup, resume, then step / check / save until the budget or the time is spent, then
    the final held-out table and the checkpoint."""
    t = Trainer(loaded, train_records, val_records, cfg, instruction, seed, passkey_digits, model_cfg, init_adapter, warm_start, chunk_sizes,
                volume)
    t.resume(state_dir)
    stop_file = state_dir.with_name(state_dir.name + ".STOP")  # touched while the run goes: end after this step as at the time limit, weights saved
    stop_file.unlink(missing_ok=True)  # a request left from an earlier attempt is not one for this run
    every_check, every_save = cfg["curriculum"]["check_every_steps"], cfg["checkpoint_every_steps"]
    t_start = time.monotonic()
    stopped_by = "max_steps"
    try:
        checked: dict[int, list[float]] = {}
        while t.step_no < t.run_end():
            t.step(state_dir)
            done = t.step_no
            elapsed = t.elapsed_before + time.monotonic() - t_start
            stop_asked = stop_file.exists()
            out_of_time = stop_asked or (bool(cfg["time_limit_minutes"]) and elapsed >= 60 * cfg["time_limit_minutes"])
            last = done >= t.run_end() or out_of_time
            checked = {}  # held-out hits of this step's check, by length (the weights change with every step)
            if done % every_check == 0 or last:
                t.check(checked)
            if done % every_save == 0 or last or done >= t.run_end():
                t.save_state(state_dir, elapsed)
            if out_of_time and done < t.run_end():
                stopped_by = "stop_file" if stop_asked else "time_limit"
                log.warning("gist-%d: %s at step %d of %d", t.n, f"{stop_file} asks to stop" if stop_asked else
                            f"train.time_limit_minutes ({cfg['time_limit_minutes']}) reached", done, t.run_end())
                break
        if stopped_by not in ("time_limit", "stop_file") and t.run_end() < cfg["max_steps"]:
            stopped_by = "after_gate_steps"
        heldout_final = t.final_heldout(checked)
    except (RuntimeError, MemoryError) as err:
        if is_oom(err):
            kind = "CUDA " if isinstance(err, torch.cuda.OutOfMemoryError) else ""
            raise RuntimeError(f"gist-{t.n}: {kind}{OOM_HELP}") from err
        raise
    t.write_checkpoint(out_dir, stopped_by, heldout_final)
    shutil.rmtree(state_dir, ignore_errors=True)
    return TrainResult(t.step_no, t.rows[-1]["loss"] if t.rows else float("nan"), t.start_step)


def gate_check(model, tokenizer, curriculum: Curriculum, heldout: dict[int, list[dict]], eos_ids: list[int], bs: int, step: int, n: int,
               hits: dict[int, list[float]] | None = None) -> list[dict]:
    """Held-out accuracy at the current stage (and at the longest length), then the promotion gate. ``hits``
    collects the per-window results by length (the final table reuses them when no step followed)."""
    hits = {} if hits is None else hits
    length = curriculum.length
    hits[length] = passkey_hits(model, tokenizer, heldout[length], eos_ids, bs)
    acc = sum(hits[length]) / len(heldout[length])
    out = [{"step": step, "kind": "passkey_acc", "length": length, "value": acc}]
    longest = max(heldout)
    if longest != length:
        hits[longest] = passkey_hits(model, tokenizer, heldout[longest], eos_ids, bs)
        acc_full = sum(hits[longest]) / len(heldout[longest])
    else:
        acc_full = acc
    out.append({"step": step, "kind": "passkey_acc_longest", "length": longest, "value": acc_full})
    event = curriculum.check(step, acc)
    log.info("step %d held-out passkey accuracy %.3f at %d tokens (%.3f at %d)%s", step, acc, length, acc_full, longest,
             f": {event}, stage now {curriculum.length} tokens" if event else "")
    if event:
        out.append({"step": step, "kind": "promotion", "length": curriculum.length, "value": acc})
    return out


def distill_kl(model, teacher, batch: dict, student_out) -> torch.Tensor:
    """KL(teacher || student) over the answer tokens: the teacher is the base model (adapter disabled, or a frozen
    copy with method full) reading the context directly; the student answers from the gist span alone."""
    ctx = model.disable_adapter() if teacher is None else nullcontext()
    with torch.no_grad(), ctx:
        t_out = forward_masked(teacher if teacher is not None else model, batch, mask_key="teacher_attention_mask")
    sel = student_out.label_mask
    s_logp = torch.log_softmax(student_out.label_logits[sel], -1)
    t_logp = torch.log_softmax(t_out.label_logits[sel], -1)
    return (t_logp.exp() * (t_logp - s_logp)).sum(-1).mean()
