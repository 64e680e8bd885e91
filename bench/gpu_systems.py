#!/usr/bin/env python
"""Systems benchmark at Llama-3-8B scale on one GPU, capped at a consumer card's memory (default 24 GB).

A Llama-3-8B-shaped model (real architecture and vocabulary, random weights: no hub access needed)
in bf16 and in 4-bit NF4 (bitsandbytes). Per method: time to first token (median of repeats, CUDA
synchronised, after warm-up), decode tokens/s, peak memory (torch.cuda.max_memory_allocated, reset
per measurement) and KV-cache bytes held:
  full context at 2k / 4k / 8k tokens; RAG = 3 x 500-token chunks + question (+ question embedding
  and top-3 search over 500-token chunks of the 8k document); gist-10/25/50 answering from a saved
  gist KV cache (compression of the 8k document timed separately).
Plus QLoRA training steps (LoRA r=16 on q/k/v/o + gist rows, gradient checkpointing) at 4k and 8k.

Usage: python bench/gpu_systems.py --out bench/results/gpu_systems.json [--cap-gb 24]
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from gistpoc.gist.cache import GistCache, answer_from_cache, compress_context, greedy_generate
from gistpoc.gist.collator import GistDataCollator, GistExample, forward_masked
from gistpoc.train.loop import apply_lora, param_groups

LLAMA3_8B = dict(
    vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
    num_key_value_heads=8, max_position_embeddings=8192, rope_theta=500000.0, rms_norm_eps=1e-5,
    bos_token_id=128000, eos_token_id=[128001, 128009], tie_word_embeddings=False,
)


def sync():
    torch.cuda.synchronize()


def build(kind: str, save_dir: Path):
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig, LlamaConfig

    cfg = LlamaConfig(**LLAMA3_8B)
    if not (save_dir / "config.json").exists():
        torch.manual_seed(0)
        with torch.device("cuda"):
            m = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
        m.save_pretrained(save_dir, max_shard_size="4GB")
        del m
        gc.collect()
        torch.cuda.empty_cache()
    kw = {"dtype": torch.bfloat16, "attn_implementation": "sdpa", "device_map": {"": 0}}
    if kind == "nf4":
        kw["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.bfloat16)
    return AutoModelForCausalLM.from_pretrained(save_dir, **kw).eval()


def measure(fn, repeats: int):
    """Run fn() (returns a Generation) `repeats` times after one warm-up; peak memory per run."""
    fn()
    ttft, tps, peaks, kv = [], [], [], []
    for _ in range(repeats):
        torch.cuda.reset_peak_memory_stats()
        g = fn()
        ttft.append(g.ttft_s * 1000)
        tps.append(g.decode_tokens_per_s)
        peaks.append(torch.cuda.max_memory_allocated())
        kv.append(g.kv_bytes)
    return {"ttft_ms_median": statistics.median(ttft), "ttft_ms_all": ttft, "decode_tok_s_median": statistics.median(tps),
            "peak_mem_gib": max(peaks) / 2**30, "kv_bytes": kv[-1]}


def inference_suite(model, repeats: int, new_tokens: int, embedder) -> dict:
    out = {}
    vocab = LLAMA3_8B["vocab_size"] - 300
    g = torch.Generator().manual_seed(1)

    def ids(n):
        return torch.randint(1000, vocab, (n,), generator=g).tolist()

    question = ids(32)
    eos = []  # random weights: decode a fixed number of tokens
    for n in (2048, 4096, 8192):
        prompt = ids(n - len(question)) + question
        try:
            out[f"full_context_{n // 1024}k"] = measure(lambda p=prompt: greedy_generate(model, p, 0, eos, new_tokens), repeats)
        except torch.cuda.OutOfMemoryError as err:
            out[f"full_context_{n // 1024}k"] = {"oom": str(err)[:200]}
            torch.cuda.empty_cache()
    # RAG: embed the question, brute-force top-3 over 500-token chunks of an 8k document, 3 x 500 + question prompt
    chunks = [" ".join(f"w{t}" for t in ids(120)) for _ in range(16)]
    chunk_emb = embedder.encode(chunks, convert_to_tensor=True, normalize_embeddings=True)
    rag_prompt = ids(1500) + question

    def rag():
        t0 = time.perf_counter()
        q = embedder.encode(["what is the passkey hidden in the document?"], convert_to_tensor=True, normalize_embeddings=True)
        top = torch.topk(chunk_emb @ q[0], 3).indices.tolist()
        sync()
        retrieval = time.perf_counter() - t0
        gen = greedy_generate(model, rag_prompt, 0, eos, new_tokens)
        gen.ttft_s += retrieval
        gen.retrieval_s = retrieval
        assert len(top) == 3
        return gen

    out["rag_3x500"] = measure(rag, repeats)
    doc = ids(8192 - 64)
    for n in (10, 25, 50):
        gist = list(range(LLAMA3_8B["vocab_size"] - n, LLAMA3_8B["vocab_size"]))  # stand-in gist ids (random weights)
        prefix = doc + gist
        t0 = time.perf_counter()
        cache = compress_context(model, prefix, len(doc), len(prefix))
        sync()
        compress_ms = (time.perf_counter() - t0) * 1000
        with tempfile.TemporaryDirectory() as td:
            cache.save(Path(td) / "c.safetensors")
            del cache
            gc.collect()
            torch.cuda.empty_cache()
            cache = GistCache.load(Path(td) / "c.safetensors", "cuda")
        r = measure(lambda c=cache: answer_from_cache(model, c, question, eos, new_tokens), repeats)
        r.update({"compress_8k_ms": compress_ms, "gist_kv_bytes": cache.nbytes, "compression_ratio": len(doc) / n})
        out[f"gist{n}_from_saved_cache"] = r
        del cache
        torch.cuda.empty_cache()
    return out


def train_suite(model, steps: int) -> dict:
    out = {}
    gist_ids = list(range(LLAMA3_8B["vocab_size"] - 25, LLAMA3_8B["vocab_size"]))
    cfg = {"lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
           "embedding_training": "trainable_tokens", "gradient_checkpointing": True, "lr_lora": 1e-4, "lr_embed": 5e-5}
    peft_model = apply_lora(model, gist_ids, cfg)
    peft_model.train()
    import bitsandbytes as bnb

    opt = bnb.optim.AdamW8bit(param_groups(peft_model, cfg))
    collate = GistDataCollator(0)
    g = torch.Generator().manual_seed(2)
    for n in (4096, 8192):
        ctx = torch.randint(1000, 120000, (n - 25 - 96,), generator=g).tolist()
        segs = [(torch.randint(1000, 120000, (24,), generator=g).tolist(), torch.randint(1000, 120000, (24,), generator=g).tolist()) for _ in range(2)]
        batch = collate([GistExample(ctx + gist_ids, len(ctx), len(ctx) + 25, segs)])
        times, losses = [], []
        torch.cuda.reset_peak_memory_stats()
        try:
            for i in range(steps + 1):
                sync()
                t0 = time.perf_counter()
                loss = forward_masked(peft_model, batch).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(peft_model.parameters(), 1.0)
                opt.step()
                opt.zero_grad(set_to_none=True)
                sync()
                if i:  # first step is warm-up
                    times.append(time.perf_counter() - t0)
                losses.append(float(loss))
            out[f"qlora_step_{n // 1024}k"] = {"tokens": int(batch["input_ids"].numel()), "step_s_median": statistics.median(times),
                                               "tokens_per_s": batch["input_ids"].numel() / statistics.median(times),
                                               "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30, "losses": losses}
        except torch.cuda.OutOfMemoryError as err:
            out[f"qlora_step_{n // 1024}k"] = {"oom": str(err)[:300]}
            torch.cuda.empty_cache()
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--cap-gb", type=float, default=24.0)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--train-steps", type=int, default=3)
    p.add_argument("--kinds", default="nf4,bf16")
    p.add_argument("--model-dir", default="/tmp/llama3-8b-random")
    p.add_argument("--suites", default="inference,train", help="which parts to run")
    args = p.parse_args()
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, args.cap_gb * 2**30 / total))
    from sentence_transformers import SentenceTransformer
    from transformers import BertConfig, BertModel

    # a MiniLM-sized encoder (random weights, same shape as all-MiniLM-L6-v2) stands in for the embedder
    st_dir = Path(tempfile.mkdtemp())
    BertModel(BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536)).save_pretrained(st_dir)
    from transformers import BertTokenizerFast

    vocab = st_dir / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(30000)]))
    BertTokenizerFast(vocab_file=str(vocab)).save_pretrained(st_dir)
    embedder = SentenceTransformer(str(st_dir), device="cuda")
    result = {"device": torch.cuda.get_device_name(0), "cap_gb": args.cap_gb, "torch": torch.__version__,
              "transformers": __import__("transformers").__version__, "python": platform.python_version(), "runs": {}}
    for kind in args.kinds.split(","):
        model = build(kind, Path(args.model_dir))
        res = {"weights_gib": torch.cuda.memory_allocated() / 2**30}
        suites = {"inference": (inference_suite, (model, args.repeats, args.new_tokens, embedder))}
        if kind == "nf4":
            suites["train"] = (train_suite, (model, args.train_steps))
        for name, (suite, suite_args) in suites.items():
            if name not in args.suites.split(","):
                continue
            try:
                res.update(suite(*suite_args))
            except Exception:  # record and go on: one broken section must not lose the others
                import traceback

                res[f"{name}_error"] = traceback.format_exc()[-2000:]
                print(res[f"{name}_error"], flush=True)
        result["runs"][kind] = res
        print(json.dumps({kind: {k: {kk: vv for kk, vv in v.items() if kk not in ("ttft_ms_all", "losses")} if isinstance(v, dict) else v for k, v in res.items()}}, indent=1), flush=True)
        del model, suites
        gc.collect()
        torch.cuda.empty_cache()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
