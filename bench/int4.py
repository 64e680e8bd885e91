"""The bench's int4 model conversions over ``gistpoc.int4`` (PyTorch's tinygemm kernel; the pipeline answers with it as
``eval.quantization: int4-tinygemm``): the whole-model swap (head included) and the NF4 model's int4 short-pass
copies that ``bench/gpu_systems.py`` measures against bf16 and NF4 (docs/gpu_results.md). CUDA only."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from gistpoc.int4 import GROUP_SIZE, Int4Linear, quantize_linears  # noqa: E402  (the kernel: one implementation)


def quantize_int4(model, group_size: int = GROUP_SIZE, library: str = "tinygemm", fuse: bool = True) -> int:
    """Replace every ``nn.Linear`` of the decoder layers and the head with ``library``'s int4 linear
    (``gistpoc.int4.Int4Linear`` for tinygemm, ``GemliteLinear`` for gemlite; CUDA, bf16 model); returns how many were
    replaced; ``fuse``: q/k/v and gate/up as one stacked weight each (``gistpoc.int4.Int4Fused``). The embedding stays
    bf16 (rows are gathered, not multiplied)."""
    return quantize_linears(model, group_size, skip=(), library=library, fuse=fuse)


class SmallPassInt4(torch.nn.Module):
    """A linear that multiplies passes of at most ``max_tokens`` rows with an int4 copy of its weight (the fused
    tinygemm kernel reads 4-bit weights once: the cost of a 32-token gist question or a decode step) and longer
    passes with the original module (bitsandbytes NF4 de-quantises once and runs a dense GEMM, the fast way for a
    1,500-token RAG prompt; tinygemm is slow there). The branch is fixed per captured shape."""

    def __init__(self, big: torch.nn.Module, small: Int4Linear, max_tokens: int = 64):
        super().__init__()
        self.big, self.small, self.max_tokens = big, small, max_tokens

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.small(x) if x.numel() // x.shape[-1] <= self.max_tokens else self.big(x)


def add_int4_small_pass(model, max_tokens: int = 64, group_size: int = GROUP_SIZE) -> int:
    """Give every bitsandbytes 4-bit linear and the head an int4 copy for short passes (``SmallPassInt4``),
    re-quantised from the de-quantised NF4 weight (CUDA). Returns how many linears got one."""
    import bitsandbytes as bnb

    count = 0
    for _name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, bnb.nn.Linear4bit):
                w = bnb.functional.dequantize_4bit(child.weight.data, child.weight.quant_state).to(torch.bfloat16)
            elif type(child) is torch.nn.Linear:
                w = child.weight.data
            else:
                continue
            small = Int4Linear(w, getattr(child, "bias", None), group_size)
            setattr(module, child_name, SmallPassInt4(child, small, max_tokens))
            count += 1
    return count
