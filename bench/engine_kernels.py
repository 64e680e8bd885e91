#!/usr/bin/env python
"""The engine's short-pass kernels (gistpoc.kernels) on the GPU: correct in bf16, and how fast (issue 14).

1. Correctness in bf16 on the card, fresh random inputs each: ``linear`` (bf16 and NF4 weights) against an fp32
   matmul of the same matrix (relative error), ``Nf4Weight`` against ``bitsandbytes.functional.dequantize_4bit``
   (bit for bit), ``add_rms_norm`` / ``silu_mul`` / ``rope_to_cache`` against the PyTorch code they replace.
2. Weight GEMMs of one Llama-3-8B layer and the head (fused q/k/v 6144 x 4096, o 4096 x 4096, fused gate/up
   28672 x 4096, down 4096 x 14336, head 128256 x 4096) at 1 / 16 / 32 / 64 rows: cuBLAS (bf16), bitsandbytes
   (NF4: ``Linear4bit``), and ``gemm_kernels.linear`` (bench/gemm_kernels.py) with its default configuration and the best of a small sweep.
   Each is timed as a CUDA graph of 8 calls over 8 weight copies (the L2 cache holds none; no launch gaps), 20
   replays, median; reported as the weight bytes read per second over the device-to-device copy bandwidth.
3. ``--engine``: the engine's gist pass (1 x 32-token question on 25 cached slots) and decode step on a
   Llama-3-8B-shaped bf16 model (random weights), kernels off vs on, replayed graphs; plus one uncaptured pass of
   each under the profiler: GPU time by kernel kind and the number of kernels.

    python bench/engine_kernels.py --out bench/results/engine_kernels_h200.json [--nf4] [--engine]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gemm_kernels  # noqa: E402
from gpu_systems import LLAMA3_8B, copy_bandwidth, graph_us  # noqa: E402

from gistpoc import kernels  # noqa: E402
from gistpoc.model import rotate_half  # noqa: E402

SHAPES = {"qkv": (6144, 4096), "o": (4096, 4096), "gate_up": (28672, 4096), "down": (4096, 14336), "head": (128256, 4096)}
ROWS = (1, 16, 32, 64)
SWEEP_ROWS = (1, 32)  # the sweep (each configuration compiles once per shape) runs at a decode step and a gist question
SWEEP_SHAPES = ("qkv", "o", "gate_up", "down")


def rel(a, b) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


def ulps(got: torch.Tensor, want: torch.Tensor, scale: torch.Tensor | None = None) -> float:
    """Largest difference in units of the bf16 spacing at ``scale`` (default: the reference value; for a sum of
    rounded terms, the largest term), 1.0 = one rounding step."""
    w = want.float()
    ref = (w if scale is None else scale.float()).abs().clamp(min=1e-30)
    step = torch.exp2(torch.floor(torch.log2(ref)) - 7)
    return float(((got.float() - w).abs() / step).max())


def replay_ms(graph, replays: int = 30) -> float:
    """Milliseconds of one replay of a captured graph (back-to-back replays between two events)."""
    for _ in range(3):
        graph.replay()
    torch.cuda.synchronize()
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record()
    for _ in range(replays):
        graph.replay()
    e.record()
    torch.cuda.synchronize()
    return s.elapsed_time(e) / replays


def nf4_linear(w: torch.Tensor):
    import bitsandbytes as bnb

    n, k = w.shape
    lin = bnb.nn.Linear4bit(k, n, bias=False, compute_dtype=torch.bfloat16, compress_statistics=True, quant_type="nf4")
    lin.weight = bnb.nn.Params4bit(w.cpu(), requires_grad=False, quant_type="nf4", compress_statistics=True, blocksize=64)
    return lin.cuda()


def correctness(nf4: bool) -> dict:
    out: dict = {}
    g = torch.Generator(device="cuda").manual_seed(0)
    for m, (n, k) in itertools.product((1, 7, 32, 64), ((6144, 4096), (4096, 14336), (896 * 3, 896))):
        x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16, generator=g)
        w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16, generator=g) / k**0.5
        b = torch.randn(n, device="cuda", dtype=torch.bfloat16, generator=g)
        y = gemm_kernels.linear(x, w, b)
        out[f"bf16_m{m}_{n}x{k}_rel_err"] = rel(y, F.linear(x.float(), w.float(), b.float()))
        out[f"bf16_m{m}_{n}x{k}_rel_err_cublas"] = rel(F.linear(x, w, b), F.linear(x.float(), w.float(), b.float()))
        if nf4:
            import bitsandbytes.functional as bnbf

            lin = nf4_linear(w)
            nw = kernels.Nf4Weight.from_bnb(lin.weight)
            dense = bnbf.dequantize_4bit(lin.weight.data, lin.weight.quant_state)
            out[f"nf4_{n}x{k}_dequantize_bit_equal"] = bool(torch.equal(nw.dequantize(), dense))
            y = gemm_kernels.linear(x, nw, b)
            ref = F.linear(x.float(), dense.float(), b.float())
            out[f"nf4_m{m}_{n}x{k}_rel_err"] = rel(y, ref)
            out[f"nf4_m{m}_{n}x{k}_rel_err_bnb"] = rel(lin(x) + b, ref)
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    norm = LlamaRMSNorm(4096, eps=1e-5).cuda().to(torch.bfloat16)
    norm.weight.data = torch.randn(4096, device="cuda", dtype=torch.bfloat16, generator=g)
    x, r = (torch.randn(48, 4096, device="cuda", dtype=torch.bfloat16, generator=g) for _ in range(2))
    s, h = kernels.add_rms_norm(x, r, norm.weight, 1e-5)
    ref = norm(x + r)
    out["add_rms_norm_sum_equal"] = bool(torch.equal(s, x + r))
    out["add_rms_norm_equal_fraction"] = float((h == ref).float().mean())
    out["add_rms_norm_max_diff_in_bf16_steps"] = ulps(h, ref)
    gu = torch.randn(48, 2 * 14336, device="cuda", dtype=torch.bfloat16, generator=g)
    out["silu_mul_equal_fraction"] = float((kernels.silu_mul(gu) == F.silu(gu[:, :14336]) * gu[:, 14336:]).float().mean())
    b_, t, hh, kv, d = 2, 24, 32, 8, 128
    qkv = torch.randn(b_, t, (hh + 2 * kv) * d, device="cuda", dtype=torch.bfloat16, generator=g)
    cos, sin = (torch.randn(b_, t, d, device="cuda", dtype=torch.bfloat16, generator=g) for _ in range(2))
    kc = torch.full((4, kv, 256, d), 3.0, device="cuda", dtype=torch.bfloat16)
    vc = kc.clone()
    slots = torch.arange(25, 25 + t, device="cuda")
    q = kernels.rope_to_cache(qkv, cos, sin, slots, kc, vc, hh, kv, d)
    qq, kk, vv = (z.view(b_, t, -1, d).transpose(1, 2) for z in qkv.split([hh * d, kv * d, kv * d], -1))
    c, s_ = cos[:, None], sin[:, None]
    for name, got, z in (("q", q, qq), ("k", kc[:b_, :, 25:25 + t], kk)):
        want = z * c + rotate_half(z) * s_
        out[f"rope_{name}_equal_fraction"] = float((got == want).float().mean())
        # in steps of the larger of the two rounded products (x cos, rotate_half(x) sin)
        out[f"rope_{name}_max_diff_in_bf16_steps"] = ulps(got, want, torch.maximum((z * c).abs(), (rotate_half(z) * s_).abs()))
    out["rope_v_equal"] = bool(torch.equal(vc[:b_, :, 25:25 + t], vv))
    kc[:b_, :, 25:25 + t] = 3.0
    out["rope_other_slots_untouched"] = bool((kc == 3.0).all())
    return out


def sweep_configs(m: int, n: int, k: int, nf4: bool, sms: int):
    """Tiles 32-128 columns x 2 K depths x 2 pipeline depths; K split so the programs just fill the GPU, and twice
    that (each configuration compiles once: the sweep is kept small)."""
    for bn, bk, stages in itertools.product((32, 64, 128), (128, 256), (3, 5)):
        programs = -(-n // bn)
        s0 = 1
        while programs * s0 < sms and k % (2 * s0 * bk) == 0:
            s0 *= 2
        for split in (s0, 2 * s0):
            if k % (split * bk) == 0:
                yield (bn, bk, split, 4, stages)


def gemms(bandwidth: float, nf4: bool, shapes: list[str]) -> dict:
    out: dict = {}
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    for name in shapes:
        n, k = SHAPES[name]
        ws = [torch.randn(n, k, device="cuda", dtype=torch.bfloat16) / k**0.5 for _ in range(8)]
        lins = nws = None
        if nf4:
            lins = [nf4_linear(w) for w in ws]
            ws = None
            torch.cuda.empty_cache()
            nws = [kernels.Nf4Weight.from_bnb(lin.weight) for lin in lins]
            nbytes = nws[0].nbytes()
        else:
            nbytes = n * k * 2
        for m in ROWS:
            x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
            weights = nws if nf4 else ws
            row = {}
            if nf4:
                row["bitsandbytes"] = graph_us(lambda i, x=x, lins=lins: lins[i](x))
            else:
                row["cublas"] = graph_us(lambda i, x=x, ws=ws: F.linear(x, ws[i]))
            row["triton_default"] = graph_us(lambda i, x=x, w=weights: gemm_kernels.linear(x, w[i]))
            row["triton_default_config"] = list(gemm_kernels._config(m, n, k, nf4, sms))
            best = None
            for cfg in sweep_configs(m, n, k, nf4, sms) if m in SWEEP_ROWS and name in SWEEP_SHAPES else ():
                try:
                    us = graph_us(lambda i, c=cfg, x=x, w=weights: gemm_kernels.linear(x, w[i], None, config=c), replays=10)
                except Exception as exc:  # noqa: BLE001 -- a configuration the compiler rejects (shared memory)
                    print(f"  {name} m{m} {cfg}: {type(exc).__name__}", flush=True)
                    torch.cuda.synchronize()
                    continue
                if best is None or us < best[0]:
                    best = (us, cfg)
            row["triton_best"], row["triton_best_config"] = (best[0], list(best[1])) if best else (None, None)
            row["fraction_of_copy"] = {key: nbytes / (v * 1e-6) / bandwidth for key, v in row.items() if isinstance(v, float)}
            out[f"{name}_m{m}"] = row
            print(f"{'nf4' if nf4 else 'bf16'} {name} m{m}: " + "  ".join(f"{key} {v:.1f}us ({row['fraction_of_copy'][key]:.2f})"
                                                                        for key, v in row.items() if isinstance(v, float))
                  + f"  best {row['triton_best_config']}", flush=True)
        del x, lins, nws, ws, weights
        torch.cuda.empty_cache()
    return out


def to_nf4(model) -> int:
    """Every linear of the decoder layers as a bitsandbytes NF4 ``Linear4bit`` (double quantisation, blocks of 64,
    bf16 compute), quantised on the GPU; the head stays bf16 as transformers leaves it."""
    import bitsandbytes as bnb

    count = 0
    for layer in model.model.layers:
        for parent in (layer.self_attn, layer.mlp):
            for name, child in list(parent.named_children()):
                if type(child) is torch.nn.Linear:
                    lin = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=child.bias is not None, compute_dtype=torch.bfloat16,
                                            compress_statistics=True, quant_type="nf4", device="meta")
                    lin.weight = bnb.nn.Params4bit(child.weight.data, requires_grad=False, quant_type="nf4", compress_statistics=True, blocksize=64)
                    if child.bias is not None:
                        lin.bias = child.bias
                    setattr(parent, name, lin.to("cuda"))
                    count += 1
    torch.cuda.empty_cache()
    return count


def engine_pass(layers: int, nf4: bool = False) -> dict:
    """Gist pass and decode step of the engine on a Llama-3-8B-shaped model (bf16 or NF4), kernels off vs on."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    from gistpoc.engine import AnswerEngine
    from gistpoc.gist.cache import GistCache

    torch.manual_seed(0)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(LlamaConfig(**{**LLAMA3_8B, "num_hidden_layers": layers}), dtype=torch.bfloat16).eval()
    if nf4:
        with torch.no_grad():
            to_nf4(model)
    kv = LLAMA3_8B["num_key_value_heads"]
    d = LLAMA3_8B["hidden_size"] // LLAMA3_8B["num_attention_heads"]
    cache = GistCache([torch.randn(1, kv, 25, d, device="cuda", dtype=torch.bfloat16) for _ in range(layers)],
                      [torch.randn(1, kv, 25, d, device="cuda", dtype=torch.bfloat16) for _ in range(layers)], 8153, 8128)
    question = torch.randint(1000, 120000, (32,)).tolist()
    out = {}
    for name, fast in (("torch", False), ("kernels", True)):
        eng = AnswerEngine(model, max_batch=1, max_len=256, fast_kernels=fast)
        gens = [eng.answer_from_cache(cache, [question], [], 32)[0] for _ in range(6)]
        st_prompt = eng._static[(1, 32, 256)]
        st_step = eng._static[(1, 1, 256)]
        res = {"prompt_pass_ms": replay_ms(st_prompt.graph), "decode_step_ms": replay_ms(st_step.graph),
               "ttft_ms": statistics.median(g.ttft_s for g in gens[1:]) * 1000,
               "decode_tok_s": statistics.median(g.decode_tokens_per_s for g in gens[1:]), "tokens": gens[-1].token_ids}
        for label, st in (("prompt", st_prompt), ("step", st_step)):
            from torch.profiler import ProfilerActivity, profile

            args = (st.ids, st.pos, st.slots, st.last, 256)
            eng._pass(*args)
            torch.cuda.synchronize()
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                eng._pass(*args)
                torch.cuda.synchronize()
            kinds: dict = {}
            count = 0
            for ev in prof.events():
                if ev.device_type.name != "CUDA":
                    continue
                count += 1
                nm = ev.name.lower()
                kind = ("gemm" if any(t in nm for t in ("gemm", "nvjet", "cutlass", "_linear_kernel", "sm90", "xmma", "splitk", "split_sum"))
                        else "attention" if any(t in nm for t in ("attention", "fmha", "flash")) else "other")
                kinds[kind] = kinds.get(kind, 0.0) + (getattr(ev, "device_time", None) or getattr(ev, "cuda_time", 0)) / 1000
            res[f"{label}_kernels"] = count
            res[f"{label}_gpu_ms_by_kind"] = kinds
            top = {}
            for ev in prof.key_averages():
                total = getattr(ev, "device_time_total", None) or getattr(ev, "cuda_time_total", 0)
                if total > 0:
                    top[ev.key[:80]] = (ev.count, total / 1000)
            res[f"{label}_top"] = dict(sorted(top.items(), key=lambda kv_: -kv_[1][1])[:12])
        out[name] = res
        print(name, {k: v for k, v in res.items() if not k.endswith("top") and k != "tokens"}, flush=True)
        del eng
        torch.cuda.empty_cache()
    out["tokens_equal"] = out["torch"]["tokens"] == out["kernels"]["tokens"]
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--nf4", action="store_true", help="also NF4 (needs bitsandbytes)")
    p.add_argument("--bf16", action="store_true", help="bf16 GEMMs")
    p.add_argument("--engine", action="store_true")
    p.add_argument("--engine-nf4", action="store_true")
    p.add_argument("--shapes", default=",".join(SHAPES))
    p.add_argument("--layers", type=int, default=32)
    args = p.parse_args()
    import triton

    result = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "triton": triton.__version__}
    bw = copy_bandwidth()
    result["copy_bandwidth_tb_s"] = bw / 1e12
    print(f"{result['device']}: copy bandwidth {bw / 1e12:.2f} TB/s", flush=True)
    if Path(args.out).exists():
        result = {**json.loads(Path(args.out).read_text()), **result}
    result["correctness"] = {**result.get("correctness", {}), **correctness(args.nf4)}
    print(json.dumps(result["correctness"]), flush=True)
    shapes = args.shapes.split(",")
    parts = [("bf16", args.bf16, lambda: gemms(bw, False, shapes)), ("nf4", args.nf4, lambda: gemms(bw, True, shapes)),
             ("engine_bf16", args.engine, lambda: engine_pass(args.layers)),
             ("engine_nf4", args.engine_nf4, lambda: engine_pass(args.layers, nf4=True))]
    for key, wanted, fn in parts:
        if not wanted:
            continue
        try:
            result[key] = fn()
        except Exception:  # noqa: BLE001 -- keep the other parts
            import traceback

            result[f"{key}_error"] = traceback.format_exc()[-3000:]
            print(result[f"{key}_error"], flush=True)
        Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
