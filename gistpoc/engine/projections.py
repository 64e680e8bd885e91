"""The compiled engine's view of a model's layers: the decoder and head, q/k/v and gate/up fused where the weights
allow, NF4 projections read through their de-quantised absmax once, the RMSNorm weights the fused kernels need."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gistpoc import kernels


def _decoder(model):
    """(inner decoder, lm_head) of a causal LM, a PEFT model (unwrapped) or a merged one."""
    m = model.get_base_model() if hasattr(model, "get_base_model") else model
    inner = getattr(m, "model", None)
    if inner is None or not hasattr(inner, "layers") or not hasattr(m, "lm_head"):
        raise TypeError(f"the compiled engine needs a decoder-only causal LM with .model.layers and .lm_head, got {type(m).__name__}")
    return inner, m.lm_head


def _fuse(linears: list) -> tuple | None:
    """One weight for several plain ``nn.Linear`` that read the same input (q/k/v; gate/up): one GEMM instead of
    three small ones. The modules keep working: their weights become views of the fused tensor (no copy kept).
    ``(weight, bias, sizes)``; for the parts of one int4 stacked weight (``gistpoc.int4.Int4Part``, in order)
    ``(the Int4Fused module, None, sizes)``: its kernel, called once (``_linear``). None when any of them is not a
    plain float linear (LoRA layers, bitsandbytes) and they are not one int4 group."""
    int4 = _int4_group(linears)
    if int4 is not None:
        return int4
    if not all(type(m) is torch.nn.Linear for m in linears) or len({(m.weight.dtype, m.weight.device) for m in linears}) != 1:
        return None
    if len({m.bias is None for m in linears}) != 1:
        return None
    done = getattr(linears[0], "_gistpoc_fused", None)
    if (done is not None and all(getattr(m, "_gistpoc_fused", None) is done for m in linears)
            and all(m.weight.untyped_storage().data_ptr() == done[0].untyped_storage().data_ptr() for m in linears)):
        return done  # a second engine on the same model shares the first one's fused weights
    # (unless the model was converted since, e.g. .to(float16): its weights are then new tensors, fused anew)
    w = torch.cat([m.weight.data for m in linears])
    b = torch.cat([m.bias.data for m in linears]) if linears[0].bias is not None else None
    sizes = [m.out_features for m in linears]
    for m, wv, bv in zip(linears, w.split(sizes), b.split(sizes) if b is not None else [None] * len(linears)):
        m.weight = torch.nn.Parameter(wv, requires_grad=m.weight.requires_grad)
        if bv is not None:
            m.bias = torch.nn.Parameter(bv, requires_grad=m.bias.requires_grad)
    fused = (w, b, sizes)
    for m in linears:
        m._gistpoc_fused = fused
    return fused


def _int4_group(linears: list) -> tuple | None:
    """``(fused, None, sizes)`` when ``linears`` are all the parts, in order, of one ``gistpoc.int4.Int4Fused``."""
    from gistpoc.int4 import Int4Part

    if not all(type(m) is Int4Part for m in linears):
        return None
    fused = linears[0].fused
    if any(m.fused is not fused for m in linears) or [m.index for m in linears] != list(range(len(fused.sizes))):
        return None
    return (fused, None, list(fused.sizes))


def _linear(fused: tuple, x: torch.Tensor) -> torch.Tensor:
    """The fused projection of ``x`` (``_fuse``'s result): one bf16 GEMM, or the int4 group's one kernel call."""
    w, b, _ = fused
    return F.linear(x, w, b) if isinstance(w, torch.Tensor) else w.kernel(x)


def _is_nf4(module) -> bool:
    """A bitsandbytes 4-bit linear holding NF4 weights: bitsandbytes' own class, not PEFT's LoRA layer over it, which
    has the same class name and hands out the base layer's ``weight`` (its forward adds the LoRA product, which the
    bare 4-bit matmul would drop)."""
    qs = getattr(getattr(module, "weight", None), "quant_state", None)
    return (type(module).__name__ == "Linear4bit" and type(module).__module__.startswith("bitsandbytes.")
            and qs is not None and getattr(qs, "quant_type", None) == "nf4")


def _flat_nf4_state(module):
    """For a bitsandbytes NF4 linear with double-quantised statistics: the same quantisation state with its absmax
    de-quantised once (float32, 1/16 byte per weight). bitsandbytes otherwise de-quantises the absmax on every call:
    two more small kernels per linear and pass, ~0.8 ms of a Llama-3-8B gist pass on an H200. None otherwise."""
    if not _is_nf4(module) or not module.weight.quant_state.nested:
        return None
    qs = module.weight.quant_state
    done = getattr(module, "_gistpoc_flat_state", None)
    if done is not None and done[0] is qs:
        return done[1]  # a second engine on the same model shares it
    from bitsandbytes.functional import QuantState

    absmax = kernels.Nf4Weight.from_bnb(module.weight).absmax.reshape(-1)
    flat = QuantState(absmax, shape=qs.shape, code=qs.code, blocksize=qs.blocksize, quant_type=qs.quant_type, dtype=qs.dtype)
    module._gistpoc_flat_state = (qs, flat)
    return flat


def _nf4_matmul(module, state, x: torch.Tensor) -> torch.Tensor:
    """``Linear4bit.forward`` with a flat quantisation state (``_flat_nf4_state``): bitsandbytes' own dispatch (gemv for
    one row, its fused 4-bit GEMM or de-quantise + GEMM for more), the same weights."""
    import bitsandbytes as bnb

    dtype = module.compute_dtype or x.dtype
    bias = None if module.bias is None else module.bias.to(dtype)
    return bnb.matmul_4bit(x.to(dtype), module.weight, bias=bias, quant_state=state).to(x.dtype)


class _Proj:
    """Linears that read one input (q/k/v, gate/up, or one alone) in a short pass: one bf16 matrix (stacked along
    the outputs) and a bias through cuBLAS, or the modules themselves (bitsandbytes NF4, LoRA layers), called one by
    one and concatenated. For NF4 that is bitsandbytes' own path (its gemv for one row, its 4-bit GEMM or de-quantise +
    GEMM for more) with the absmax de-quantised once: measured on an H200 it beats ``kernels.linear`` over NF4 at
    1-64 rows (bench/engine_kernels.py)."""

    def __init__(self, modules: list, fused: tuple | None = None):
        self.modules = modules
        self.weight = self.bias = self.int4 = None
        self.flat = [_flat_nf4_state(m) for m in modules]
        if fused is not None and not isinstance(fused[0], torch.Tensor):
            self.int4 = fused   # one int4 kernel for the group
        elif fused is not None:
            self.weight, self.bias = fused[0], fused[1]
        elif len(modules) == 1 and type(modules[0]) is torch.nn.Linear:
            self.weight, self.bias = modules[0].weight, modules[0].bias

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight is not None:
            return F.linear(x, self.weight, self.bias)
        if self.int4 is not None:
            return _linear(self.int4, x)
        outs = [m(x) if flat is None else _nf4_matmul(m, flat, x) for m, flat in zip(self.modules, self.flat)]
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=-1)


def _rms(norm) -> tuple[torch.Tensor, float] | None:
    """(weight, eps) of a Llama / Qwen2 RMSNorm (weight * normalised x), None for any other norm."""
    if type(norm).__name__ not in ("LlamaRMSNorm", "Qwen2RMSNorm") or not hasattr(norm, "variance_epsilon"):
        return None
    return norm.weight, float(norm.variance_epsilon)


