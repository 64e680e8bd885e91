#!/usr/bin/env python
"""4-bit weight GEMMs at decode and gist-question sizes on the GPU: which kernel library reads int4 weights near the
bandwidth (issue 29).

For each weight of one Llama-3-8B layer (fused q/k/v 6144 x 4096, o 4096 x 4096, fused gate/up 28672 x 4096, down
4096 x 14336) and 1 / 16 / 32 / 64 rows of bf16 activations:
  bf16       cuBLAS (``F.linear``) on the bf16 weight
  tinygemm   PyTorch's int4 kernel (``torch.ops.aten._weight_int4pack_mm``; torchao's int4 weight-only layout)
  gemlite    gemlite's Triton kernels (``gemlite.helper.A16Wn``), when ``gemlite`` imports
  fbgemm     FBGEMM's CUTLASS mixed-input GEMM (``torch.ops.fbgemm.bf16i4bf16_shuffled``, ``gistpoc.int4.FbgemmWeight``),
             when ``fbgemm_gpu.experimental.gen_ai`` imports
the 4-bit rows reading the same ``gistpoc.int4.quantize`` weight (asymmetric int4, group 128, bf16 scale and zero).
Correctness: each 4-bit kernel against an fp32 matmul with ``gistpoc.int4.dequantize`` (relative error). Time: a CUDA
graph of 8 calls over 8 weight copies (the L2 cache holds none), 20 replays, median (``gpu_systems.graph_us``);
reported with the bytes each reads, the fraction of the device-to-device copy bandwidth that is, and the time over
the weight-read floor.

    python bench/int4_kernels.py --out bench/results/int4_kernels_<card>.json

On the offline GPU machine: here, ``pip download --no-deps gemlite`` and ``pip wheel --no-deps -w device_in/q4
gemlite-*.tar.gz`` (0.2 MB, pure Python over Triton); there, with ``device_in/q4`` carried,
``pip install --no-index --no-deps --target .dq4 device_in/q4/*.whl`` and ``PYTHONPATH=$PWD/.dq4:$PWD`` before the
command above (torch and Triton are on the machine's image). FBGEMM the same way: ``pip download --no-deps
--only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 fbgemm-gpu-genai==1.6.0`` (35 MB; 1.6 is
the release built for torch 2.11 and CUDA 13, as the machine has) into ``device_in/fb``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from gpu_systems import copy_bandwidth, graph_us  # noqa: E402

from gistpoc.int4 import FbgemmWeight, TinyGemmWeight, dequantize, fbgemm_ops, gemlite_module, quantize  # noqa: E402
from gistpoc.int4 import relative_error as rel  # noqa: E402

SHAPES = {"qkv": (6144, 4096), "o": (4096, 4096), "gate_up": (28672, 4096), "down": (4096, 14336),
          # the same layer unfused, as the compiled engine runs int4 projections today (it fuses plain nn.Linear only):
          # --shapes q k v o gate up down
          "q": (4096, 4096), "k": (1024, 4096), "v": (1024, 4096), "gate": (14336, 4096), "up": (14336, 4096)}
ROWS = (1, 16, 32, 64)
COPIES = 8


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--shapes", nargs="+", default=["qkv", "o", "gate_up", "down"], choices=list(SHAPES),
                   help="the weights timed; the layer row sums them (default: one layer, q/k/v and gate/up fused)")
    args = p.parse_args()
    dev = "cuda"
    torch.manual_seed(0)
    bw = copy_bandwidth()
    try:
        import gemlite  # noqa: F401
        libs = ["tinygemm", "gemlite"]
    except ImportError as err:
        print(f"gemlite not importable ({err}): tinygemm only")
        libs = ["tinygemm"]
    try:
        fbgemm_ops()
        libs.append("fbgemm")
    except ImportError as err:
        print(f"fbgemm not importable ({err})")
    out = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "copy_bandwidth_GBps": bw / 1e9,
           "group_size": 128, "libraries": libs, "rows": list(ROWS), "shapes": {}, "checks": {}}
    for lib, mod in (("gemlite", "gemlite"), ("fbgemm", "fbgemm_gpu")):
        if lib in libs:
            out[lib] = getattr(sys.modules[mod], "__version__", "?")
    for name in args.shapes:
        n, k = SHAPES[name]
        ws = [torch.randn(n, k, device=dev, dtype=torch.bfloat16) * 0.02 for _ in range(COPIES)]
        qws = [quantize(w) for w in ws]
        kernels = {"bf16": [lambda x, w=w: F.linear(x, w) for w in ws]}
        kernels["tinygemm"] = [TinyGemmWeight(q) for q in qws]
        for lib, make in (("gemlite", gemlite_module), ("fbgemm", FbgemmWeight)):
            if lib not in libs:
                continue
            try:
                kernels[lib] = [make(q) for q in qws]
                kernels[lib][0](torch.randn(1, k, device=dev, dtype=torch.bfloat16))
            except Exception as err:  # noqa: BLE001 - a library that fails here is reported, the others still measured
                print(f"{lib} failed on {name}: {type(err).__name__}: {err}")
                out.setdefault("errors", {})[f"{lib}/{name}"] = f"{type(err).__name__}: {err}"
                libs.remove(lib)
                kernels.pop(lib, None)
        x16 = torch.randn(16, k, device=dev, dtype=torch.bfloat16)
        want = x16.float() @ dequantize(qws[0]).T
        out["checks"][name] = {lib: rel(kernels[lib][0](x16), want) for lib in kernels if lib != "bf16"}
        out["checks"][name]["bf16_vs_unquantised"] = rel(kernels["bf16"][0](x16), want)
        nbytes = {"bf16": n * k * 2, **{lib: qws[0].nbytes() for lib in kernels if lib != "bf16"}}
        rows_out = {}
        for rows in ROWS:
            x = torch.randn(rows, k, device=dev, dtype=torch.bfloat16)
            for lib, fns in kernels.items():
                us = graph_us(lambda i, fns=fns, x=x: fns[i](x), copies=COPIES)
                floor_us = nbytes[lib] / bw * 1e6
                rows_out.setdefault(lib, {})[rows] = {"us": us, "bandwidth_fraction": floor_us / us, "over_floor": us / floor_us}
            print(f"{name:>8} {n}x{k} rows {rows:>2}: " + "  ".join(
                f"{lib} {rows_out[lib][rows]['us']:7.1f} us ({rows_out[lib][rows]['bandwidth_fraction']:.2f} bw)" for lib in kernels), flush=True)
        out["shapes"][name] = {"n": n, "k": k, "bytes": nbytes, "times": rows_out}
        del ws, qws, kernels
        torch.cuda.empty_cache()
    # the timed weights summed (by default one layer's four fused projections): the weight-reading part of a decode step (1 row) and a gist question (32)
    libs_all = [lib for lib in ("bf16", "tinygemm", "gemlite", "fbgemm") if all(lib in v["times"] for v in out["shapes"].values())]
    out["layer"] = {lib: {rows: sum(out["shapes"][s]["times"][lib][rows]["us"] for s in out["shapes"]) for rows in ROWS} for lib in libs_all}
    for lib in libs_all:
        floor = sum(out["shapes"][s]["bytes"][lib] for s in out["shapes"]) / bw * 1e6
        print(f"layer {lib:>8}: " + "  ".join(f"{r} rows {out['layer'][lib][r]:7.1f} us ({out['layer'][lib][r] / floor:.2f}x floor)" for r in ROWS))
    print("checks (relative error against the de-quantised weight in fp32):", json.dumps(out["checks"]))
    Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
