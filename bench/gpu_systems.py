#!/usr/bin/env python
"""Systems benchmark at Llama-3-8B scale on one GPU, capped at a consumer card's memory (default 24 GB).

A Llama-3-8B-shaped model (real architecture and vocabulary, random weights: no hub access needed) in three
weight formats: bf16, 4-bit NF4 (bitsandbytes, the design's setup) and int4 weight-only (PyPTorch's fused
tinygemm kernel, ``bench/int4.py``'s ``Int4Linear``, groups of 128; ``int4-gemlite``: the same numbers read by gemlite).
Every method runs on two engines:
  eager:    the Hugging Face loop the pipeline used so far (``greedy_generate``, a DynamicCache, one question);
  compiled: ``gistpoc.engine.AnswerEngine`` (static KV cache, prompt pass and decode step replayed as CUDA graphs).
Per method and engine: time to first token (median of repeats, CUDA-synchronised, after warm-up), decode
tokens/s, peak memory (torch.cuda.max_memory_allocated, reset per measurement) and KV bytes held:
  full context at 2k / 4k / 8k tokens; RAG = 3 x 500-token chunks + question (+ question embedding and top-3
  search over 500-token chunks of the 8k document, counted in TTFT); gist-10/25/50 answering a 32-token question
  from a saved gist KV cache (compression of the 8k document timed separately).
Also: questions/s on one gist-25 cache at batch 1/4/16 (compiled), the weight-read floor (bytes of the weights a
forward reads / the copy bandwidth measured on this card) beside each TTFT, and greedy-token agreement between
the engines (where they differ, the step and the eager top-2 logit gap there).
Plus QLoRA training steps (LoRA r=16 on q/k/v/o + gist rows, gradient checkpointing) at 4k and 8k.

Usage: python bench/gpu_systems.py --out bench/results/gpu_systems_h200.json [--cap-gb 24] [--kinds nf4,bf16,int4]
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
from int4 import quantize_int4  # bench/int4.py (the script's folder is on sys.path)

from gistpoc.engine import AnswerEngine
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


def build(kind: str, save_dir: Path, layers: int = 32):
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig, LlamaConfig

    cfg = LlamaConfig(**{**LLAMA3_8B, "num_hidden_layers": layers})
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
    model = AutoModelForCausalLM.from_pretrained(save_dir, **kw).eval()
    if kind.startswith("int4"):   # the same int4 numbers, read by tinygemm or by gemlite; "-unfused": q/k/v and gate/up
        with torch.no_grad():     # quantised one by one (seven kernel calls a layer instead of four, as before 2026-12-07)
            quantize_int4(model, library=int4_library(kind), fuse=not kind.endswith("-unfused"))
        gc.collect()
        torch.cuda.empty_cache()
    return model


def int4_library(kind: str) -> str:
    """The kernel library of an int4 kind: ``int4`` is tinygemm, ``int4-<library>[-unfused]`` names it (an unknown one
    stops in ``gistpoc.int4.quantize_linears``, with the libraries listed)."""
    return kind.removesuffix("-unfused").removeprefix("int4").removeprefix("-") or "tinygemm"


def copy_bandwidth() -> float:
    """Device memory bandwidth in bytes/s: a 2 GiB device-to-device copy (read + written), median of 10."""
    a = torch.randn(2**29, device="cuda")
    b = torch.empty_like(a)
    for _ in range(3):
        b.copy_(a)
    times = []
    for _ in range(10):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        b.copy_(a)
        end.record()
        sync()
        times.append(start.elapsed_time(end) / 1000)
    del a, b
    torch.cuda.empty_cache()
    return 2 * 2**31 / statistics.median(times)


CAP = [1.0]


def graph_us(fn, copies: int = 8, replays: int = 20) -> float:
    """Median microseconds of one ``fn(i)`` (i = weight copy), timed as the engine runs it: a CUDA graph of ``copies``
    calls (no host launch gaps), replayed ``replays`` times between two events. Timing one eager launch between
    two events instead counts the host's launch gap (5-30 us) and made cuBLAS look 2x slower than it is."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for i in range(copies):
            fn(i)
    torch.cuda.current_stream().wait_stream(side)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for i in range(copies):
            fn(i)
    g.replay()
    sync()
    times = []
    for _ in range(replays):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        g.replay()
        e.record()
        sync()
        times.append(s.elapsed_time(e) * 1000 / copies)
    del g
    return statistics.median(times)


def gemm_probe(bandwidth: float) -> dict:
    """Achieved bandwidth of the decoder's bf16 weight GEMMs (cuBLAS) at M = 1, 32, 512 rows, graph-timed over 8
    weight copies (the 50 MB L2 cache holds none): what the prompt pass and the decode step get per weight byte.
    Fused q/k/v (6144 x 4096), fused gate/up (28672 x 4096), down (4096 x 14336)."""
    out = {}
    for name, (n, k) in {"qkv": (6144, 4096), "gate_up": (28672, 4096), "down": (4096, 14336)}.items():
        ws = [torch.randn(n, k, device="cuda", dtype=torch.bfloat16) for _ in range(8)]
        for m in (1, 32, 512):
            x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
            t = graph_us(lambda i, x=x, ws=ws: torch.nn.functional.linear(x, ws[i])) / 1e6
            out[f"{name}_m{m}"] = {"us": t * 1e6, "weight_bytes_per_s_fraction_of_copy": n * k * 2 / t / bandwidth}
        del ws
    torch.cuda.empty_cache()
    return out


def weight_read_bytes(model, short_pass: bool = False) -> int:
    """Bytes a forward pass must read: every parameter and buffer except the input embedding table (only the
    prompt's rows are gathered) and the rotary tables; ``short_pass``: of linears with an int4 short-pass copy,
    only the copy."""
    from int4 import SmallPassInt4

    emb = model.get_input_embeddings().weight
    total = 0
    seen = set()
    skip = set()
    if short_pass:
        for m in model.modules():
            if isinstance(m, SmallPassInt4):
                skip |= {t.data_ptr() for t in list(m.big.parameters()) + list(m.big.buffers())}
                qs = getattr(getattr(m.big, "weight", None), "quant_state", None)
                skip |= {t.data_ptr() for t in (getattr(qs, "absmax", None), getattr(getattr(qs, "state2", None), "absmax", None)) if t is not None}
    for t in list(model.parameters()) + list(model.buffers()):
        if t.data_ptr() in skip:
            continue
        if t.data_ptr() in seen or t is emb or t.data_ptr() == emb.data_ptr():
            continue
        seen.add(t.data_ptr())
        total += t.numel() * t.element_size()
    inv = [b for n, b in model.named_buffers() if "inv_freq" in n]
    return total - sum(b.numel() * b.element_size() for b in inv)


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


def guarded(fn, *args):
    try:
        return fn(*args)
    except torch.cuda.OutOfMemoryError as err:
        torch.cuda.empty_cache()
        return {"oom": str(err)[:200]}
    except Exception as err:  # noqa: BLE001 -- record and go on: one broken row must not lose the others
        import traceback

        torch.cuda.empty_cache()
        return {"error": f"{type(err).__name__}: {err}"[:300], "traceback": traceback.format_exc()[-1500:]}


@torch.no_grad()
def agreement(model, eager, compiled, prompt: list[int], start: int, cache: GistCache | None) -> dict:
    """Greedy tokens of the two engines: equal, or the first differing step with the eager engine's top-2 logit
    gap there (a divergence must start at a near-tie) and the compiled engine's logit for the eager token."""
    a, b = eager.token_ids, compiled.token_ids
    if a == b:
        return {"equal": True, "tokens": len(a)}
    d = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    ids = torch.tensor([prompt + a[:d]], device="cuda")
    pos = torch.arange(start, start + ids.shape[1], device="cuda")[None]
    past = cache.to_dynamic_cache() if cache is not None else None
    logits = model(input_ids=ids, position_ids=pos, past_key_values=past).logits[0, -1].float()
    top = torch.topk(logits, 2)
    return {"equal": False, "tokens": len(a), "first_divergence_step": d, "eager_top2_gap": float(top.values[0] - top.values[1]),
            "eager_token": a[d] if d < len(a) else None, "compiled_token": b[d] if d < len(b) else None,
            "logit_gap_eager_vs_compiled_token": float(logits[a[d]] - logits[b[d]]) if d < min(len(a), len(b)) else None}


def inference_suite(model, repeats: int, new_tokens: int, embedder, floor_ms: float, levels=("eager", "compiled")) -> dict:
    """Every method on the engines in ``levels`` (eager; compiled; any other name: the compiled engine over the
    model as it is now, e.g. with the int4 short-pass kernels attached)."""
    out: dict = {}
    vocab = LLAMA3_8B["vocab_size"] - 300
    g = torch.Generator().manual_seed(1)

    def ids(n):
        return torch.randint(1000, vocab, (n,), generator=g).tolist()

    question = ids(32)
    eos: list[int] = []  # random weights: decode a fixed number of tokens
    engine = AnswerEngine(model, max_batch=1, max_len=8192 + 2 * new_tokens + 64)  # full context, RAG
    gist_engine = AnswerEngine(model, max_batch=16, max_len=256)  # one gist cache, up to 16 questions

    def row(name: str, eager_fn, compiled_fn, prompt, start, cache=None, extra=None):
        res = {"weight_read_floor_ms": floor_ms}
        for level in levels:
            res[level] = guarded(measure, eager_fn if level == "eager" else compiled_fn, repeats)
        e, c = res.get("eager", {}), res.get("compiled", {})
        if "ttft_ms_median" in e and "ttft_ms_median" in c:
            res["ttft_speedup"] = e["ttft_ms_median"] / c["ttft_ms_median"]
            res["agreement"] = guarded(agreement, model, eager_fn(), compiled_fn(), prompt, start, cache)
        res.update(extra or {})
        out[name] = res
        print(name, {k: (round(res[k]["ttft_ms_median"], 2) if "ttft_ms_median" in res[k] else res[k]) for k in levels}, flush=True)

    for n in (2048, 4096, 8192):
        prompt = ids(n - len(question)) + question
        row(f"full_context_{n // 1024}k", lambda p=prompt: greedy_generate(model, p, 0, eos, new_tokens),
            lambda p=prompt: engine.generate([p], 0, eos, new_tokens)[0], prompt, 0)
    # RAG: embed the question, brute-force top-3 over 500-token chunks of an 8k document, 3 x 500 + question prompt
    chunks = [" ".join(f"w{t}" for t in ids(120)) for _ in range(16)]
    chunk_emb = embedder.encode(chunks, convert_to_tensor=True, normalize_embeddings=True)
    rag_prompt = ids(1500) + question

    def rag(gen_fn):
        t0 = time.perf_counter()
        q = embedder.encode(["what is the passkey hidden in the document?"], convert_to_tensor=True, normalize_embeddings=True)
        top = torch.topk(chunk_emb @ q[0], 3).indices.tolist()
        sync()
        retrieval = time.perf_counter() - t0
        gen = gen_fn()
        gen.ttft_s += retrieval
        assert len(top) == 3
        return gen

    row("rag_3x500", lambda: rag(lambda: greedy_generate(model, rag_prompt, 0, eos, new_tokens)),
        lambda: rag(lambda: engine.generate([rag_prompt], 0, eos, new_tokens)[0]), rag_prompt, 0)
    doc = ids(8192 - 64)
    for n in (10, 25, 50):
        gist = list(range(LLAMA3_8B["vocab_size"] - n, LLAMA3_8B["vocab_size"]))  # stand-in gist ids (random weights)
        prefix = doc + gist
        sync()
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
        extra = {"compress_8k_ms": compress_ms, "gist_kv_bytes": cache.nbytes, "compression_ratio": len(doc) / n}
        if n == 25 and levels != ("eager",):  # questions/s on one gist cache: B questions answered (new_tokens each) in one batch
            qps = {}
            for b in (1, 4, 16):
                qs = [ids(32) for _ in range(b)]
                gist_engine.answer_from_cache(cache, qs, eos, new_tokens)
                times = []
                for _ in range(repeats):
                    sync()
                    t0 = time.perf_counter()
                    gens = gist_engine.answer_from_cache(cache, qs, eos, new_tokens)
                    sync()
                    times.append(time.perf_counter() - t0)
                qps[f"batch{b}"] = {"questions_per_s": b / statistics.median(times), "ttft_ms": gens[0].ttft_s * 1000,
                                    "decode_tok_s_per_question": gens[0].decode_tokens_per_s}
            extra[f"{levels[-1]}_questions_per_s"] = qps
        row(f"gist{n}_from_saved_cache", lambda c=cache: answer_from_cache(model, c, question, eos, new_tokens),
            lambda c=cache: gist_engine.answer_from_cache(c, [question], eos, new_tokens)[0], question, cache.next_position, cache, extra)
        del cache
        torch.cuda.empty_cache()
    return out


def nf4_int4_suite(model, repeats: int, new_tokens: int, embedder, bandwidth: float) -> dict:
    """The NF4 model with int4 copies for short passes (``bench/int4.py``'s ``add_int4_small_pass``), compiled engine only;
    rows come back as ``compiled_int4`` under each method (merged by the caller)."""
    from int4 import add_int4_small_pass

    torch.cuda.set_per_process_memory_fraction(1.0)
    with torch.no_grad():
        n = add_int4_small_pass(model)
    torch.cuda.set_per_process_memory_fraction(CAP[0])
    gc.collect()
    torch.cuda.empty_cache()
    floor_ms = weight_read_bytes(model, short_pass=True) / bandwidth * 1000
    rows = inference_suite(model, repeats, new_tokens, embedder, floor_ms, levels=("compiled_int4",))
    return {"int4_small_pass_linears": n, "int4_weights_gib": torch.cuda.memory_allocated() / 2**30, "int4_short_pass_floor_ms": floor_ms,
            "_merge": rows}


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
    p.add_argument("--kinds", default="bf16,nf4", help="bf16, nf4 (eager, compiled over bitsandbytes, compiled with int4 short passes), int4 (tinygemm), int4-gemlite, int4-fbgemm; '-unfused' after an int4 kind: q/k/v and gate/up quantised one by one")
    p.add_argument("--model-dir", default="/tmp/llama3-8b-random")
    p.add_argument("--suites", default="inference,train", help="which parts to run: inference, train, int4 (NF4 with int4 short-pass copies)")
    p.add_argument("--layers", type=int, default=32, help="decoder layers (fewer: a quick check of the code paths)")
    args = p.parse_args()
    total = torch.cuda.get_device_properties(0).total_memory
    cap = min(1.0, args.cap_gb * 2**30 / total)
    CAP[0] = cap
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
    import triton

    result = {"triton": triton.__version__, "device": torch.cuda.get_device_name(0), "cap_gb": args.cap_gb, "layers": args.layers, "repeats": args.repeats, "new_tokens": args.new_tokens, "torch": torch.__version__,
              "transformers": __import__("transformers").__version__, "python": platform.python_version(), "runs": {}}
    bandwidth = copy_bandwidth()
    result["copy_bandwidth_tb_s"] = bandwidth / 1e12
    print(f"device-to-device copy bandwidth: {bandwidth / 1e12:.2f} TB/s", flush=True)
    result["gemm_probe"] = gemm_probe(bandwidth)
    print({k: round(v["weight_bytes_per_s_fraction_of_copy"], 2) for k, v in result["gemm_probe"].items()}, flush=True)
    for kind in args.kinds.split(","):
        torch.cuda.set_per_process_memory_fraction(1.0)  # building (and int4 conversion) is not measured
        model = build(kind, Path(args.model_dir), args.layers)
        torch.cuda.set_per_process_memory_fraction(cap)
        torch.cuda.reset_peak_memory_stats()
        read = weight_read_bytes(model)
        floor_ms = read / bandwidth * 1000
        res = {"weights_gib": torch.cuda.memory_allocated() / 2**30, "weight_read_gib": read / 2**30, "weight_read_floor_ms": floor_ms}
        suites = {"inference": (inference_suite, (model, args.repeats, args.new_tokens, embedder, floor_ms))}
        if kind == "nf4":
            suites["train"] = (train_suite, (model, args.train_steps))
        if kind == "nf4":
            suites["int4"] = (nf4_int4_suite, (model, args.repeats, args.new_tokens, embedder, bandwidth))
        for name, (suite, suite_args) in suites.items():
            if name.split("_")[0] not in args.suites.split(","):
                continue
            try:
                part = suite(*suite_args)
                for method, levels in part.pop("_merge", {}).items():
                    res.setdefault(method, {}).update({k: v for k, v in levels.items() if k not in ("weight_read_floor_ms", "gist_kv_bytes", "compress_8k_ms", "compression_ratio")})
                    res[method]["int4_short_pass_floor_ms"] = part.get("int4_short_pass_floor_ms")
                res.update(part)
            except Exception:  # record and go on: one broken section must not lose the others
                import traceback

                res[f"{name}_error"] = traceback.format_exc()[-2000:]
                print(res[f"{name}_error"], flush=True)
        result["runs"][kind] = res
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2))  # after every kind: a later failure keeps this one
        # the loop's variables hold the model too (suite_args): without dropping them the next kind runs beside this one's
        # weights (2026-12-07, H100: int4 after int4-gemlite held 10.2 GiB for 5.1 of its own, and ran out of its cap)
        del model, suites, suite_args
        gc.collect()
        torch.cuda.empty_cache()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
