"""Triton kernels for the compiled answer engine's short passes on CUDA (issue 14).

A gist answer is a pass of a few dozen rows over every weight of the model. Replayed as a CUDA graph it is bound
by reading the weights and by how many small kernels each layer runs: the Hugging Face layer runs ~35 kernels
(norm statistics, rotary embedding, activations, copies) around its GEMMs, 2.9 of the 7.9 ms of a Llama-3-8B gist
pass on an H200 (``bench/engine_kernels.py``). The engine's short pass uses:

- ``add_rms_norm``: the residual add and the RMSNorm after it, one kernel (HF Llama / Qwen2 RMSNorm: fp32
  statistics, normalised value rounded to the input dtype, then times the weight);
- ``rope_to_cache``: rotary embedding of the queries (written as (B, H, T, D)) and keys, and the keys and values
  written into their cache slots, one kernel;
- ``silu_mul``: SiLU(gate) * up of a fused gate/up output, one kernel.

The projections stay with cuBLAS and bitsandbytes: a split-K Triton GEMM over bf16 or NF4 weights (``Nf4Weight``,
bitsandbytes' layout) was correct but not faster on the H200, and lives in ``bench/gemm_kernels.py`` beside the
benchmark that measured it; the engine uses ``Nf4Weight`` to read an NF4 module's de-quantised absmax once.

Each kernel rounds where the PyTorch code it replaces rounds, so results agree with it to bf16 rounding.
``tests/unit/test_kernels.py`` checks them against PyTorch in Triton's interpreter (CPU); ``bench/engine_kernels.py``
checks and times them on the GPU. Triton is optional: without it (CPU machines) the engine keeps its PyTorch path.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

try:  # optional: the CPU default never needs it
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised on machines without Triton
    triton = None
    tl = None

MAX_ROWS = 64  # passes with more rows (long prompts) keep cuBLAS / bitsandbytes: they are compute-bound there


def available(device: torch.device | str | None = None) -> bool:
    """Triton is importable and ``device`` is CUDA: where the engine uses these kernels unless told otherwise.
    (With ``TRITON_INTERPRET=1`` set before import they also run on CPU tensors, slowly: the tests do that.)"""
    return triton is not None and device is not None and torch.device(device).type == "cuda"


@dataclass
class Nf4Weight:
    """An NF4 matrix (N, K) in bitsandbytes' layout, ready for ``linear``: ``packed`` uint8 (N, K // 2), element
    ``2j`` of a row in the high nibble of byte ``j``; ``absmax`` float32 (N, K // blocksize) (double quantisation
    undone once); ``code`` the 16 NF4 values, float32."""

    packed: torch.Tensor
    absmax: torch.Tensor
    code: torch.Tensor
    blocksize: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.packed.shape[0], self.packed.shape[1] * 2

    @classmethod
    def from_bnb(cls, weight) -> "Nf4Weight":
        """From a bitsandbytes ``Params4bit`` (``Linear4bit.weight``) quantised as NF4."""
        qs = weight.quant_state
        if qs.quant_type != "nf4":
            raise ValueError(f"only NF4 4-bit weights are supported, got {qs.quant_type!r}")
        n, k = qs.shape
        if k % qs.blocksize or qs.blocksize % 2:
            raise ValueError(f"in_features {k} must be a multiple of the quantisation block {qs.blocksize}")
        if tuple(qs.code.float().cpu().tolist()) != NF4_CODE:
            raise ValueError("the NF4 code book differs from the one the kernel has built in")
        absmax = qs.absmax
        if qs.nested:
            import bitsandbytes.functional as bnbf

            absmax = bnbf.dequantize_blockwise(qs.absmax, qs.state2) + qs.offset
        return cls(weight.data.reshape(n, k // 2), absmax.float().reshape(n, k // qs.blocksize).contiguous(), qs.code.float().contiguous(), qs.blocksize)

    @classmethod
    def cat(cls, parts: list["Nf4Weight"]) -> "Nf4Weight":
        """Several matrices that read the same input stacked along N (q/k/v; gate/up): blocks lie within rows, so
        rows can be concatenated as they are."""
        if len({(p.shape[1], p.blocksize) for p in parts}) != 1:
            raise ValueError("NF4 matrices to fuse need one in_features and one block size")
        if len(parts) == 1:
            return parts[0]  # no copy
        return cls(torch.cat([p.packed for p in parts]), torch.cat([p.absmax for p in parts]), parts[0].code, parts[0].blocksize)

    def dequantize(self) -> torch.Tensor:
        """The bf16 matrix the kernel multiplies by (PyTorch, for checks)."""
        n, k = self.shape
        b = self.packed.long()
        vals = torch.stack([self.code[b >> 4], self.code[b & 15]], -1).reshape(n, k // self.blocksize, self.blocksize)
        return (vals * self.absmax[..., None]).reshape(n, k).to(torch.bfloat16)

    def nbytes(self) -> int:
        return self.packed.numel() + self.absmax.numel() * 4


# bitsandbytes' NF4 code book (``bitsandbytes.functional.get_4bit_type("nf4")``), as float32
NF4_CODE = (-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
            -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
            0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0)

if triton is not None:

    @triton.jit
    def _add_rms_norm_kernel(x_ptr, r_ptr, w_ptr, sum_ptr, out_ptr, H, eps, HAS_RES: tl.constexpr, BLOCK: tl.constexpr):
        row = tl.program_id(0)
        offs = tl.arange(0, BLOCK)
        ok = offs < H
        x = tl.load(x_ptr + row * H + offs, mask=ok, other=0.0)
        if HAS_RES:
            x = (x.to(tl.float32) + tl.load(r_ptr + row * H + offs, mask=ok, other=0.0).to(tl.float32)).to(x_ptr.dtype.element_ty)
            tl.store(sum_ptr + row * H + offs, x, mask=ok)
        xf = x.to(tl.float32)
        var = tl.sum(xf * xf, axis=0) / H
        y = (xf / tl.sqrt(var + eps)).to(x_ptr.dtype.element_ty)
        w = tl.load(w_ptr + offs, mask=ok, other=0.0)
        tl.store(out_ptr + row * H + offs, (w.to(tl.float32) * y.to(tl.float32)).to(out_ptr.dtype.element_ty), mask=ok)

    @triton.jit
    def _silu_mul_kernel(gu_ptr, out_ptr, inter, BLOCK: tl.constexpr):
        row = tl.program_id(0)
        offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        ok = offs < inter
        g = tl.load(gu_ptr + row * 2 * inter + offs, mask=ok, other=0.0).to(tl.float32)
        u = tl.load(gu_ptr + row * 2 * inter + inter + offs, mask=ok, other=0.0).to(tl.float32)
        act = (g / (1.0 + tl.exp(-g))).to(out_ptr.dtype.element_ty).to(tl.float32)
        tl.store(out_ptr + row * inter + offs, (act * u).to(out_ptr.dtype.element_ty), mask=ok)

    @triton.jit
    def _rope_kernel(qkv_ptr, cos_ptr, sin_ptr, slots_ptr, q_ptr, kc_ptr, vc_ptr, T, S, H: tl.constexpr, KV: tl.constexpr,
                     D: tl.constexpr, C_B, C_KV):
        # one program per (row b, token t, head): heads 0..H-1 queries, H..H+KV-1 keys (+ their values)
        bt = tl.program_id(0)
        head = tl.program_id(1)
        b = bt // T
        t = bt % T
        half = D // 2
        d = tl.arange(0, D)
        partner = tl.where(d < half, d + half, d - half)
        sign = tl.where(d < half, -1.0, 1.0)
        base = qkv_ptr + bt * (H + 2 * KV) * D + head * D
        x = tl.load(base + d).to(tl.float32)
        xr = tl.load(base + partner).to(tl.float32) * sign
        c = tl.load(cos_ptr + bt * D + d).to(tl.float32)
        s = tl.load(sin_ptr + bt * D + d).to(tl.float32)
        ty = q_ptr.dtype.element_ty
        out = ((x * c).to(ty).to(tl.float32) + (xr * s).to(ty).to(tl.float32)).to(ty)
        if head < H:
            tl.store(q_ptr + ((b * H + head) * T + t) * D + d, out)
        else:
            kvh = head - H
            slot = tl.load(slots_ptr + t)
            dst = b * C_B + kvh * C_KV + slot * D + d
            tl.store(kc_ptr + dst, out.to(kc_ptr.dtype.element_ty))
            v = tl.load(qkv_ptr + bt * (H + 2 * KV) * D + (H + KV + kvh) * D + d)
            tl.store(vc_ptr + dst, v.to(vc_ptr.dtype.element_ty))



def add_rms_norm(x: torch.Tensor, residual: torch.Tensor | None, weight: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(x + residual, RMSNorm(x + residual) * weight) in one kernel; without ``residual``: (x, RMSNorm(x) * weight)."""
    h = x.shape[-1]
    x2 = x.reshape(-1, h).contiguous()
    out = torch.empty_like(x2)
    s = torch.empty_like(x2) if residual is not None else x2
    r2 = residual.reshape(-1, h).contiguous() if residual is not None else x2
    _add_rms_norm_kernel[(x2.shape[0],)](x2, r2, weight, s, out, h, eps, HAS_RES=residual is not None,
                                         BLOCK=triton.next_power_of_2(h), num_warps=8 if h >= 2048 else 4)
    return s.reshape(x.shape), out.reshape(x.shape)


def silu_mul(gate_up: torch.Tensor) -> torch.Tensor:
    """SiLU(gate) * up where ``gate_up`` is (..., 2 I) = [gate | up] (a fused gate/up projection)."""
    two_i = gate_up.shape[-1]
    g2 = gate_up.reshape(-1, two_i).contiguous()
    inter = two_i // 2
    out = torch.empty(g2.shape[0], inter, device=g2.device, dtype=g2.dtype)
    block = 1024
    _silu_mul_kernel[(g2.shape[0], triton.cdiv(inter, block))](g2, out, inter, BLOCK=block)
    return out.reshape(*gate_up.shape[:-1], inter)


def rope_to_cache(qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, slots: torch.Tensor, k_cache: torch.Tensor,
                  v_cache: torch.Tensor, n_heads: int, kv_heads: int, head_dim: int) -> torch.Tensor:
    """Rotary embedding of a fused q/k/v output (B, T, (H + 2 KV) D) with ``cos``/``sin`` (B, T, D): returns the
    rotated queries (B, H, T, D); the rotated keys and the values go to cache slots ``slots`` (T,) of ``k_cache`` /
    ``v_cache`` (B', KV, S, D), rows 0..B-1."""
    b, t, _ = qkv.shape
    qkv = qkv.contiguous()
    q = torch.empty(b, n_heads, t, head_dim, device=qkv.device, dtype=qkv.dtype)
    cos, sin = cos.expand(b, t, head_dim).contiguous(), sin.expand(b, t, head_dim).contiguous()
    if k_cache.stride(-1) != 1 or k_cache.stride(-2) != head_dim or k_cache.stride() != v_cache.stride():
        raise ValueError("rope_to_cache: the cache needs contiguous (slot, dim) rows")
    _rope_kernel[(b * t, n_heads + kv_heads)](qkv, cos, sin, slots, q, k_cache, v_cache, t, k_cache.shape[2], H=n_heads, KV=kv_heads,
                                               D=head_dim, C_B=k_cache.stride(0), C_KV=k_cache.stride(1), num_warps=1)
    return q
