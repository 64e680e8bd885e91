"""Which GEMM reaches the weight-read floor for short passes? (issue 14, on the GPU machine)

The compiled answer engine is bound by its bf16 weight GEMMs at 1-64 rows: cuBLAS reads the weights at 28-65 % of copy
bandwidth there (bench/results/gpu_systems_h200.json, ``gemm_probe``). This probe times the decoder's three GEMM shapes
(Llama-3-8B: fused q/k/v 6144 x 4096, fused gate/up 28672 x 4096, down 4096 x 14336) at M = 1, 32, 64 rows with
  cublas     torch's default BLAS backend
  cublaslt   torch.backends.cuda.preferred_blas_library("cublaslt")
  triton     a split-K Triton kernel written for short passes (tile 16-64 rows x 64-128 columns, K split 4-16 ways,
             fp32 atomics), best configuration per shape by measurement; its result is checked against cuBLAS
and prints each one's weight bytes per second as a fraction of the device-to-device copy bandwidth (CUDA events,
median of 50 over 8 rotating weight copies, so the L2 cache holds none).

    python bench/gemm_backends.py --out bench/results/gemm_backends_h200.json
"""
from __future__ import annotations

import argparse
import json
import statistics

import torch
from gpu_systems import copy_bandwidth  # bench/ is on sys.path when this file runs

SHAPES = {"qkv": (6144, 4096), "gate_up": (28672, 4096), "down": (4096, 14336)}
ROWS = (1, 32, 64)


def timed(fn, ws, x) -> float:
    for w in ws:
        fn(x, w)
    times = []
    for i in range(50):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn(x, ws[i % len(ws)])
        e.record()
        torch.cuda.synchronize()
        times.append(s.elapsed_time(e) / 1000)
    return statistics.median(times)


def triton_linear():
    """A split-K GEMM y = x @ w.T for short x (the engine's prompt and decode passes); None without Triton."""
    try:
        import triton
        import triton.language as tl
    except ImportError:
        return None

    @triton.jit
    def kernel(x_ptr, w_ptr, y_ptr, M, N, K, K_PER: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
        pid_n = tl.program_id(0)
        pid_k = tl.program_id(1)
        rm = tl.arange(0, BM)
        rn = pid_n * BN + tl.arange(0, BN)
        acc = tl.zeros((BM, BN), dtype=tl.float32)
        k0 = pid_k * K_PER
        for kk in range(0, K_PER, BK):
            rk = k0 + kk + tl.arange(0, BK)
            x = tl.load(x_ptr + rm[:, None] * K + rk[None, :], mask=rm[:, None] < M, other=0.0)
            w = tl.load(w_ptr + rn[:, None] * K + rk[None, :])
            acc += tl.dot(x, tl.trans(w))
        tl.atomic_add(y_ptr + rm[:, None] * N + rn[None, :], acc, mask=rm[:, None] < M)

    def make(bn: int, bk: int, split: int, warps: int, stages: int):
        def run(x, w):
            m, k = x.shape
            n = w.shape[0]
            y = torch.zeros(m, n, device=x.device, dtype=torch.float32)
            bm = max(16, triton.next_power_of_2(m))
            kernel[(n // bn, split)](x, w, y, m, n, k, K_PER=k // split, BM=bm, BN=bn, BK=bk, num_warps=warps, num_stages=stages)
            return y.to(x.dtype)

        return run

    return make


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    torch.manual_seed(0)
    bw = copy_bandwidth()
    result = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "copy_bandwidth_tb_s": bw / 1e12, "shapes": {}}
    print(f"{result['device']}: copy bandwidth {bw / 1e12:.2f} TB/s", flush=True)
    make = triton_linear()
    result["triton"] = None if make is None else __import__("triton").__version__
    for name, (n, k) in SHAPES.items():
        ws = [torch.randn(n, k, device="cuda", dtype=torch.bfloat16) / k**0.5 for _ in range(8)]
        for m in ROWS:
            x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
            row = {}
            for backend in ("cublas", "cublaslt"):
                torch.backends.cuda.preferred_blas_library(backend)
                t = timed(torch.nn.functional.linear, ws, x)
                row[backend] = {"us": t * 1e6, "fraction_of_copy": n * k * 2 / t / bw}
            torch.backends.cuda.preferred_blas_library("cublas")
            if make is not None:
                ref = torch.nn.functional.linear(x.float(), ws[0].float())
                best = None
                for bn in (64, 128):
                    for bk in (64, 128):
                        for split in (4, 8, 16):
                            if k % (split * bk) or n % bn:
                                continue
                            for warps, stages in ((4, 3), (4, 5)):
                                fn = make(bn, bk, split, warps, stages)
                                try:
                                    err = (fn(x, ws[0]).float() - ref).abs().max().item()
                                    t = timed(fn, ws, x)
                                except Exception as exc:  # a configuration the compiler rejects (shared memory)
                                    print(f"  triton {name} m{m} bn{bn} bk{bk} s{split} w{warps}/{stages}: {type(exc).__name__}", flush=True)
                                    continue
                                if best is None or t < best["us"] / 1e6:
                                    best = {"us": t * 1e6, "fraction_of_copy": n * k * 2 / t / bw, "max_abs_err": err,
                                            "config": {"bn": bn, "bk": bk, "split_k": split, "warps": warps, "stages": stages}}
                row["triton"] = best
            result["shapes"][f"{name}_m{m}"] = row
            print(f"{name} m{m}: " + "  ".join(f"{b} {v['us']:.1f} us ({v['fraction_of_copy']:.2f})" for b, v in row.items() if v), flush=True)
        del ws
        torch.cuda.empty_cache()
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=1)


if __name__ == "__main__":
    main()
