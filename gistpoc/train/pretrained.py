"""Stage 1 of gist training: a task-agnostic pre-trained adapter (LoRA + gist rows) that ``train_gist`` fine-tunes.

The pre-training stage sees the training split only: its passkey windows come from training documents and its
curriculum gate's held-out windows from a hash-chosen slice of them (never from val/test documents). Its output
folder carries ``provenance.json``: what the adapter needs to match (base-model fingerprint, N, gist ids, LoRA
shape) and what it was made from (commit, config, data hash, steps, held-out passkey accuracy, documents).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from gistpoc.data.documents import split_of

PROVENANCE = "provenance.json"
ADAPTER = "adapter_model.safetensors"
HELDOUT_SHARE = 0.1  # of the training documents, for stage 1's curriculum gate and validation loss
# LoRA keys that must agree between the pre-trained adapter and the fine-tuning stage's train section
SHAPE_KEYS = ("method", "lora_r", "lora_alpha", "target_modules", "embedding_training")


class PretrainedError(ValueError):
    """A pre-trained gist adapter that does not fit this run (message names the file and the mismatch)."""


def base_doc_id(doc_id: str) -> str:
    """The extracted document a window came from (windows after the first are ``<id>#w<k>``)."""
    return doc_id.split("#w")[0]


def heldout_split(records: list[dict], share: float = HELDOUT_SHARE) -> tuple[list[dict], list[dict]]:
    """Split training records into (stage-1 training, stage-1 held-out): the ``share`` of base documents (at least
    one) with the lowest hash of their id are held out."""
    def rank(doc_id: str) -> str:
        return hashlib.sha256(f"gistpoc-pretrain-heldout:{base_doc_id(doc_id)}".encode()).hexdigest()

    bases = sorted({base_doc_id(r["doc_id"]) for r in records}, key=rank)
    if len(bases) < 2:
        raise PretrainedError(f"pre-training needs at least 2 training documents (one is held out for the curriculum "
                              f"gate), got {len(bases)}: raise data.split.train")
    held = set(bases[: max(1, round(share * len(bases)))])
    return ([r for r in records if base_doc_id(r["doc_id"]) not in held],
            [r for r in records if base_doc_id(r["doc_id"]) in held])


def base_fingerprint(model, n_vocab: int) -> str:
    """Identity of the base model, the same whether it is held in fp32, bf16 or NF4 (embeddings stay unquantised):
    the first ``n_vocab`` input-embedding rows rounded to bf16, and the shape of the network."""
    emb = model.get_input_embeddings().weight[:n_vocab].detach().to("cpu", torch.bfloat16).contiguous()
    h = hashlib.sha256(emb.view(torch.int16).numpy().tobytes())
    cfg = model.config
    h.update(json.dumps([cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, n_vocab]).encode())
    return h.hexdigest()


def provenance(loaded, cfg: dict, summary: dict, data_hash: str, commit: str, base_fp: str, seed: int) -> dict:
    """What a stage-1 adapter must match and what it was made from; ``base_fp`` is ``base_fingerprint`` of the
    model before LoRA wrapped it, ``summary`` the checkpoint's summary.json."""
    return {
        "kind": "gistpoc pre-trained gist adapter (stage 1)",
        "n_gist": len(loaded.gist_ids),
        "gist_ids": list(loaded.gist_ids),
        "vocab_size": len(loaded.tokenizer),
        "base_fingerprint": base_fp,
        "lora": {k: cfg[k] for k in SHAPE_KEYS},
        "commit": commit,
        "seed": seed,
        "data_hash": data_hash,
        "training_documents": sorted({base_doc_id(d) for d in summary["training_documents"]}),
        "heldout_documents": sorted({base_doc_id(d) for d in summary["validation_documents"]}),
        "warm_start": summary["pretrained"],  # the adapter it started from (another N's stage 1), or None
        "steps": summary["steps"],
        "stopped_by": summary["stopped_by"],
        "curriculum": summary["curriculum"],
        "heldout_passkey": summary["heldout_passkey"],
        "config": cfg,
    }


def check(adapter_dir: Path, loaded, cfg: dict, warm_start: bool = False) -> dict:
    """Validate a pre-trained adapter against the loaded model (gist tokens added) and the fine-tuning train
    section; return its provenance. Every mismatch stops with the file and what differs.

    ``warm_start``: the adapter is another N's (at least as many gist tokens), whose first rows seed this one's."""
    adapter_dir = Path(adapter_dir)
    for name in (PROVENANCE, ADAPTER):
        if not (adapter_dir / name).exists():
            raise PretrainedError(f"gist.pretrained: {adapter_dir / name} is missing (a pre-trained adapter folder holds "
                                  f"{ADAPTER} and {PROVENANCE}; run with gist.pretrained: train to make one)")
    prov = json.loads((adapter_dir / PROVENANCE).read_text())
    where = adapter_dir / PROVENANCE
    n = len(loaded.gist_ids)
    if warm_start and prov["n_gist"] < n:
        raise PretrainedError(f"gist.warm_start: {where} has N = {prov['n_gist']} gist tokens, fewer than the {n} it should seed")
    if not warm_start and prov["n_gist"] != n:
        raise PretrainedError(f"gist.pretrained: {where} is for N = {prov['n_gist']} gist tokens, this checkpoint has N = {n}")
    vocab = len(loaded.tokenizer) + (prov["n_gist"] - n if warm_start else 0)
    if prov["gist_ids"][:n] != list(loaded.gist_ids) or prov["vocab_size"] != vocab:
        raise PretrainedError(f"gist.pretrained: {where}: gist token ids {prov['gist_ids'][:2]}.. / vocabulary {prov['vocab_size']} "
                              f"differ from this tokenizer's {list(loaded.gist_ids)[:2]}.. / {len(loaded.tokenizer)}: another tokenizer")
    fp = base_fingerprint(loaded.model, min(loaded.gist_ids))
    if prov["base_fingerprint"] != fp:
        raise PretrainedError(f"gist.pretrained: {where} was trained on another base model (fingerprint "
                              f"{prov['base_fingerprint'][:12]}.., this model {fp[:12]}..): set gist.pretrained: train or none")
    for k in SHAPE_KEYS:
        if prov["lora"][k] != cfg[k]:
            raise PretrainedError(f"gist.pretrained: {where} has {k} = {prov['lora'][k]!r}, train.{k} is {cfg[k]!r}: they must agree")
    leaked = [d for d in prov["training_documents"] if split_of(d) != "train"]
    if leaked:
        raise PretrainedError(f"gist.pretrained: {where} was trained on documents outside the train split ({leaked[:3]}): "
                              "it would leak evaluation documents")
    return prov


def load_weights(model, adapter_dir: Path, n_gist: int | None = None) -> None:
    """Copy a pre-trained adapter's weights (LoRA matrices, gist rows) into a freshly wrapped PEFT model; with
    ``n_gist`` (a warm start from a larger N), only the first ``n_gist`` gist rows."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    state = load_file(str(Path(adapter_dir) / ADAPTER))
    if n_gist is not None:
        state = {k: v[:n_gist] if "trainable_tokens_delta" in k else v for k, v in state.items()}
    result = set_peft_model_state_dict(model, state)
    tied = getattr(model.config, "tie_word_embeddings", False)  # a tied lm_head shares the embedding's gist rows
    missing = [k for k in result.missing_keys if ("lora_" in k or "trainable_tokens" in k) and not (tied and "lm_head" in k)]
    if missing or result.unexpected_keys:
        raise PretrainedError(f"gist.pretrained: {adapter_dir / ADAPTER} does not fit the adapter "
                              f"(missing {missing[:2]}, unexpected {list(result.unexpected_keys)[:2]})")


def file_hash(adapter_dir: Path) -> str:
    return hashlib.sha256((Path(adapter_dir) / ADAPTER).read_bytes()).hexdigest()
