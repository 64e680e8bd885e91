#!/usr/bin/env python
"""Does a row's output depend on how many rows go with it? The probe behind docs/gpu_results.md's "eager against
compiled" paragraph (issue 29): gemlite's compiled engine parts from its eager one at the first token, FBGEMM's and
bf16's only at near-ties.

The compiled engine pads a prompt pass to a bucket (``gistpoc.engine.core.AnswerEngine.bucket``: 16, 32, 64, then
multiples of 64) and replays it in a CUDA graph; the eager engine runs the prompt's own length. If a kernel library
picks another kernel (or another split of the reduction) for another row count, the same row comes out different, and
32 layers carry that to the logits. For each library (bf16 cuBLAS, tinygemm, gemlite, FBGEMM, the same
``gistpoc.int4.quantize`` weight) and n rows of a 64-row bf16 input, relative differences (Frobenius, rows 0..n-1):
  bucket     f(x[:n]) against f(x[:bucket(n)])[:n]          (eager length against the compiled engine's padded pass)
  graph      f(x[:m]) eager against the same call replayed in a CUDA graph, m = bucket(n)
  one_row    f(x[:n]) against each row alone, f(x[i:i+1])   (prompt pass against decode-sized calls)
  reference  f(x[:n]) against the fp32 product with the de-quantised weight (what every library computes)

    python bench/int4_batch_variance.py --out device_out/int4/batch_variance.json      (CUDA; gemlite / FBGEMM as in
                                                                                       bench/int4_kernels.py's header)

``--device cpu --shapes 256x256`` runs what the CPU has (bf16, tinygemm; no graph): the unit test's dry run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from gistpoc.engine.core import AnswerEngine  # noqa: E402
from gistpoc.int4 import FbgemmWeight, TinyGemmWeight, dequantize, gemlite_module, quantize  # noqa: E402
from gistpoc.int4 import relative_error as rel  # noqa: E402

SHAPES = {"qkv": (6144, 4096), "o": (4096, 4096), "gate_up": (28672, 4096), "down": (4096, 14336)}
ROWS = (1, 5, 21, 37, 100)


def graphed(fn, x: torch.Tensor) -> torch.Tensor:
    """``fn(x)`` captured in a CUDA graph and replayed once (after warm-up on a side stream, as the engine does)."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            fn(x)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        y = fn(x)
    g.replay()
    torch.cuda.synchronize()
    return y.clone()


def line(r: dict) -> str:
    graph = "-" if r["graph_diff"] is None else f"{r['graph_diff']:.1e}"
    return f"bucket {r['bucket_diff']:.1e} graph {graph} 1-row {r['one_row_diff']:.1e} ref {r['reference_err']:.1e}"


def shape(text: str) -> tuple[str, tuple[int, int]]:
    """``qkv`` (a Llama-3-8B weight) or ``NxK``."""
    if text in SHAPES:
        return text, SHAPES[text]
    try:
        n, k = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: one of {sorted(SHAPES)} or NxK") from None
    return text, (n, k)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="cuda")
    p.add_argument("--shapes", nargs="+", type=shape, default=list(SHAPES.items()))
    args = p.parse_args(argv)
    torch.manual_seed(0)
    dev = torch.device(args.device)
    libs = {"bf16": None, "tinygemm": TinyGemmWeight, "gemlite": gemlite_module, "fbgemm": FbgemmWeight}
    out = {"device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu", "torch": torch.__version__,
           "rows": list(ROWS), "shapes": {}, "errors": {}}
    for name, (n_out, k) in args.shapes:
        w = torch.randn(n_out, k, device=dev, dtype=torch.bfloat16) * 0.02
        qw = quantize(w)
        ref_w = dequantize(qw)
        x = torch.randn(max(AnswerEngine.bucket(r) for r in ROWS), k, device=dev, dtype=torch.bfloat16)
        res = {}
        for lib, make in libs.items():
            try:
                fn = (lambda t, w=w: F.linear(t, w)) if make is None else make(qw)
                fn(x[:1])
            except Exception as err:  # noqa: BLE001 - a library missing here is reported, the others still probed
                out["errors"][lib] = f"{type(err).__name__}: {err}"[:300]
                continue
            wref = w.float() if lib == "bf16" else ref_w
            rows = {}
            for n in ROWS:
                m = AnswerEngine.bucket(n)
                y, y_bucket = fn(x[:n]), fn(x[:m])
                rows[str(n)] = {"bucket": m,
                                "bucket_diff": rel(y, y_bucket[:n]),
                                "graph_diff": rel(y_bucket, graphed(fn, x[:m].clone())) if dev.type == "cuda" else None,
                                "one_row_diff": rel(y, torch.cat([fn(x[i:i + 1]) for i in range(n)])),
                                "reference_err": rel(y, x[:n].float() @ wref.T)}
            res[lib] = rows
            print(f"{name:>8} {lib:>8}: " + "  ".join(f"n={n}: {line(r)}" for n, r in rows.items()), flush=True)
        out["shapes"][name] = res
        del w, qw, ref_w
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    Path(args.out).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
