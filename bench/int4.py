"""The bench-only int4 path (issue 28: moved out of gistpoc.engine, which never uses it): weight-only int4 linears
over PyTorch's tinygemm kernel, the whole-model swap and the NF4 model's int4 short-pass copies that
``bench/gpu_systems.py`` measures against bf16 and NF4 (docs/gpu_results.md). CUDA only."""

from __future__ import annotations

import torch


class Int4Linear(torch.nn.Module):
    """Weight-only int4 linear (asymmetric, groups of ``group_size`` along the input) over PyTorch's fused
    tinygemm kernel (``aten._weight_int4pack_mm``, CUDA, bf16 activations): the 4-bit weights are read once per
    matmul, never de-quantised into a full matrix, and the op is CUDA-graph-capturable.
    Built from a float weight (``from_linear``); the de-quantised weight is ``q * scale + min`` per group."""

    def __init__(self, packed: torch.Tensor, scales_zeros: torch.Tensor, bias: torch.Tensor | None, in_features: int, out_features: int, group_size: int):
        super().__init__()
        self.register_buffer("packed", packed)
        self.register_buffer("scales_zeros", scales_zeros)
        self.bias = bias
        self.in_features, self.out_features, self.group_size = in_features, out_features, group_size

    @staticmethod
    def quantize(w: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(q in 0..15 as int32 (N, K), scales (N, G), mins (N, G)) minimising nothing fancy: min/max per group."""
        n, k = w.shape
        g = w.float().reshape(n, k // group_size, group_size)
        lo, hi = g.amin(-1), g.amax(-1)
        scale = ((hi - lo) / 15).clamp(min=1e-6)
        q = ((g - lo[..., None]) / scale[..., None]).round().clamp(0, 15).to(torch.int32).reshape(n, k)
        return q, scale, lo

    @classmethod
    def from_linear(cls, linear: torch.nn.Module, group_size: int = 128, inner_k_tiles: int = 8) -> "Int4Linear":
        w = linear.weight.data
        n, k = w.shape
        if k % group_size or k % (inner_k_tiles * 16) or n % 8:
            raise ValueError(f"int4 needs in_features % {max(group_size, inner_k_tiles * 16)} == 0 and out_features % 8 == 0, got {tuple(w.shape)}")
        q, scale, lo = cls.quantize(w, group_size)
        # tinygemm de-quantises (q - 8) * scale + zero, so zero = min + 8 * scale
        sz = torch.stack([scale, lo + 8 * scale], -1).transpose(0, 1).contiguous().to(torch.bfloat16)  # (G, N, 2)
        ref = (q.reshape(n, k // group_size, group_size) * scale[..., None] + lo[..., None]).reshape(n, k).to(torch.bfloat16)
        probe = torch.randn(8, k, dtype=torch.bfloat16, device=w.device)
        want = (probe.float() @ ref.float().t())
        # the nibble order of the packed bytes has changed between PyTorch versions: keep the one that computes ref
        for hi_first in (True, False):
            a, b = (q[:, ::2], q[:, 1::2]) if hi_first else (q[:, 1::2], q[:, ::2])
            packed = torch.ops.aten._convert_weight_to_int4pack((a << 4 | b).to(torch.uint8), inner_k_tiles)
            got = torch.ops.aten._weight_int4pack_mm(probe, packed, group_size, sz).float()
            if (got - want).norm() <= 2e-2 * want.norm():
                break
        else:
            raise RuntimeError(f"int4 kernel does not reproduce the quantised weight ({tuple(w.shape)}): relative error {float((got - want).norm() / want.norm()):.3g}")
        bias = getattr(linear, "bias", None)
        bias = None if bias is None else bias.data.to(torch.bfloat16)
        return cls(packed, sz, bias, k, n, group_size)

    def dequantized(self) -> torch.Tensor:
        """The weight this module multiplies by, in bf16 (for checks): an identity matrix through the kernel."""
        eye = torch.eye(self.in_features, dtype=torch.bfloat16, device=self.packed.device)
        return torch.ops.aten._weight_int4pack_mm(eye, self.packed, self.group_size, self.scales_zeros).t()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        y = torch.ops.aten._weight_int4pack_mm(x.reshape(-1, shape[-1]).to(torch.bfloat16).contiguous(), self.packed, self.group_size, self.scales_zeros)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*shape[:-1], self.out_features).to(x.dtype)


def quantize_int4(model, group_size: int = 128) -> int:
    """Replace every ``nn.Linear`` of the decoder layers and the head with ``Int4Linear`` (CUDA, bf16 model);
    returns how many were replaced. The embedding stays bf16 (rows are gathered, not multiplied)."""
    count = 0
    for _name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if type(child) is torch.nn.Linear:
                setattr(module, child_name, Int4Linear.from_linear(child, group_size))
                count += 1
    return count


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


def add_int4_small_pass(model, max_tokens: int = 64, group_size: int = 128) -> int:
    """Give every bitsandbytes 4-bit linear and the head an int4 copy for short passes (``SmallPassInt4``),
    re-quantised from the de-quantised NF4 weight (CUDA). Returns how many linears got one."""
    from types import SimpleNamespace

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
            small = Int4Linear.from_linear(SimpleNamespace(weight=SimpleNamespace(data=w), bias=getattr(child, "bias", None)), group_size)
            setattr(module, child_name, SmallPassInt4(child, small, max_tokens))
            count += 1
    return count
