"""The split-K Triton GEMM for short passes (at most ``MAX_ROWS`` rows) over a bf16 matrix or NF4 weights in
bitsandbytes' layout (``gistpoc.kernels.Nf4Weight``), de-quantised in registers: the bit-exact matrix bitsandbytes
builds. Measured on the H200 it is correct but not faster than what the engine uses (cuBLAS reads bf16 weights at
0.6-1.0 of copy bandwidth at 1-64 rows; NF4 de-quantisation in registers is bound by arithmetic, a select tree per
4-bit code: 0.04-0.08 of bandwidth against bitsandbytes' 0.07-0.29), so it lives here, beside the benchmark that shows
this (``bench/engine_kernels.py``), not in the package. ``tests/unit/test_kernels.py`` checks it against PyTorch in
Triton's interpreter."""

from __future__ import annotations

import torch

from gistpoc.kernels import MAX_ROWS, Nf4Weight, tl, triton

if triton is not None:

    @triton.jit
    def _nf4_value(q):
        """NF4 code -> float32 value by a tree of selects on its four bits (a table lookup per element, i.e. a
        gather, is ~50x slower in Triton here)."""
        b0 = (q & 1) != 0
        b1 = (q & 2) != 0
        b2 = (q & 4) != 0
        b3 = (q & 8) != 0
        l0 = tl.where(b0, -0.6961928009986877, -1.0)
        l1 = tl.where(b0, -0.39491748809814453, -0.5250730514526367)
        l2 = tl.where(b0, -0.18477343022823334, -0.28444138169288635)
        l3 = tl.where(b0, 0.0, -0.09105003625154495)
        l4 = tl.where(b0, 0.16093020141124725, 0.07958029955625534)
        l5 = tl.where(b0, 0.33791524171829224, 0.24611230194568634)
        l6 = tl.where(b0, 0.5626170039176941, 0.44070982933044434)
        l7 = tl.where(b0, 1.0, 0.7229568362236023)
        m0 = tl.where(b1, l1, l0)
        m1 = tl.where(b1, l3, l2)
        m2 = tl.where(b1, l5, l4)
        m3 = tl.where(b1, l7, l6)
        n0 = tl.where(b2, m1, m0)
        n1 = tl.where(b2, m3, m2)
        return tl.where(b3, n1, n0).to(tl.float32)

    @triton.jit
    def _linear_kernel(x_ptr, w_ptr, absmax_ptr, code_ptr, bias_ptr, y_ptr, part_ptr, M, N, K, stride_xm, K_PER,
                       BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, NF4: tl.constexpr,
                       BLOCKSIZE: tl.constexpr, HAS_BIAS: tl.constexpr, PARTIAL: tl.constexpr):
        pid_n = tl.program_id(0)
        pid_k = tl.program_id(1)
        rm = tl.arange(0, BM)
        rn = pid_n * BN + tl.arange(0, BN)
        row_ok = rm[:, None] < M
        col_ok = rn < N
        acc = tl.zeros((BM, BN), dtype=tl.float32)
        k0 = pid_k * K_PER
        for kk in range(0, K_PER, BK):
            if NF4:
                # one quantisation block (BLOCKSIZE inputs, one absmax per row) at a time: no per-element gathers
                for r in tl.static_range(BK // BLOCKSIZE):
                    j = (k0 + kk + r * BLOCKSIZE) // 2 + tl.arange(0, BLOCKSIZE // 2)  # byte index within a row
                    wb = tl.load(w_ptr + rn[:, None] * (K // 2) + j[None, :], mask=col_ok[:, None], other=0)
                    scale = tl.load(absmax_ptr + rn * (K // BLOCKSIZE) + (k0 + kk + r * BLOCKSIZE) // BLOCKSIZE, mask=col_ok, other=0.0)
                    w_hi = (_nf4_value(wb >> 4) * scale[:, None]).to(x_ptr.dtype.element_ty)
                    w_lo = (_nf4_value(wb & 15) * scale[:, None]).to(x_ptr.dtype.element_ty)
                    x_even = tl.load(x_ptr + rm[:, None] * stride_xm + 2 * j[None, :], mask=row_ok, other=0.0)
                    x_odd = tl.load(x_ptr + rm[:, None] * stride_xm + 2 * j[None, :] + 1, mask=row_ok, other=0.0)
                    acc += tl.dot(x_even, tl.trans(w_hi))
                    acc += tl.dot(x_odd, tl.trans(w_lo))
            else:
                rk = k0 + kk + tl.arange(0, BK)
                w = tl.load(w_ptr + rn[:, None] * K + rk[None, :], mask=col_ok[:, None], other=0.0)
                x = tl.load(x_ptr + rm[:, None] * stride_xm + rk[None, :], mask=row_ok, other=0.0)
                acc += tl.dot(x, tl.trans(w))
        out_mask = row_ok & col_ok[None, :]
        if not PARTIAL:
            if HAS_BIAS:
                acc += tl.load(bias_ptr + rn, mask=col_ok, other=0.0).to(tl.float32)[None, :]
            tl.store(y_ptr + rm[:, None] * N + rn[None, :], acc.to(y_ptr.dtype.element_ty), mask=out_mask)
        else:
            tl.store(part_ptr + pid_k * M * N + rm[:, None] * N + rn[None, :], acc, mask=out_mask)

    @triton.jit
    def _split_sum_kernel(part_ptr, bias_ptr, y_ptr, MN, N, SPLIT, HAS_BIAS: tl.constexpr, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        ok = offs < MN
        acc = tl.zeros((BLOCK,), dtype=tl.float32)
        for s in range(SPLIT):  # fixed order: the same sum on every run
            acc += tl.load(part_ptr + s * MN + offs, mask=ok, other=0.0)
        if HAS_BIAS:
            acc += tl.load(bias_ptr + offs % N, mask=ok, other=0.0).to(tl.float32)
        tl.store(y_ptr + offs, acc.to(y_ptr.dtype.element_ty), mask=ok)



def _config(m: int, n: int, k: int, nf4: bool, sms: int) -> tuple[int, int, int, int, int]:
    """(BN, BK, split, warps, stages): a fixed choice per shape (the same on every run, so results repeat).
    Enough programs to cover the GPU about twice; K split when the output alone is too narrow."""
    bn = 64 if n >= 64 else max(16, triton.next_power_of_2(n))
    bk = 256 if nf4 else 128
    programs = triton.cdiv(n, bn)
    split = 1
    while programs * split < 2 * sms and k % (2 * split * bk) == 0 and split < 16:
        split *= 2
    warps = 4
    stages = 4 if m <= 32 else 3
    return bn, bk, split, warps, stages


_SMS: dict = {}
_PARTS: dict = {}


def _sms(device: torch.device) -> int:
    if device.type != "cuda":
        return 132
    if device not in _SMS:
        _SMS[device] = torch.cuda.get_device_properties(device).multi_processor_count
    return _SMS[device]


def linear(x: torch.Tensor, weight: "torch.Tensor | Nf4Weight", bias: torch.Tensor | None = None, config: tuple | None = None) -> torch.Tensor:
    """x (..., K) of at most ``MAX_ROWS`` rows times a bf16 weight (N, K) or an ``Nf4Weight``: (..., N) in x's dtype."""
    shape = x.shape
    x2 = x.reshape(-1, shape[-1])
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    m, k = x2.shape
    nf4 = isinstance(weight, Nf4Weight)
    n, wk = weight.shape
    if wk != k:
        raise ValueError(f"linear: input has {k} features, weight expects {wk}")
    if m > MAX_ROWS:
        raise ValueError(f"linear: {m} rows; the short-pass kernel takes at most {MAX_ROWS}")
    bn, bk, split, warps, stages = config or _config(m, n, k, nf4, _sms(x.device))
    while k % (split * bk):  # a K that the tile does not divide (small test shapes)
        bk //= 2
        if bk < 16:
            raise ValueError(f"linear: in_features {k} needs to be a multiple of 16")
    if nf4:
        bk = max(bk, weight.blocksize)
        if bk % weight.blocksize or k % (split * bk):
            raise ValueError(f"linear: the K tile ({bk}) must hold whole quantisation blocks ({weight.blocksize}) and divide K / split")
    bm = max(16, triton.next_power_of_2(m))
    y = torch.empty(m, n, device=x.device, dtype=x.dtype)
    part = y
    if split > 1:
        key = (x.device, split, m, n)
        part = _PARTS.get(key)
        if part is None:  # kept: a captured graph writes to the same buffer on every replay
            part = _PARTS[key] = torch.empty(split, m, n, device=x.device, dtype=torch.float32)
    w_ptr = weight.packed if nf4 else weight
    _linear_kernel[(triton.cdiv(n, bn), split)](
        x2, w_ptr, weight.absmax if nf4 else w_ptr, weight.code if nf4 else w_ptr, bias if bias is not None else y, y, part,
        m, n, k, x2.stride(0), k // split, BM=bm, BN=bn, BK=bk, NF4=nf4, BLOCKSIZE=weight.blocksize if nf4 else 1,
        HAS_BIAS=bias is not None and split == 1, PARTIAL=split > 1, num_warps=warps, num_stages=stages)
    if split > 1:
        block = 1024
        _split_sum_kernel[(triton.cdiv(m * n, block),)](part, bias if bias is not None else y, y, m * n, n, split,
                                                        HAS_BIAS=bias is not None, BLOCK=block)
    return y.reshape(*shape[:-1], n)

