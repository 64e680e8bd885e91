"""The engine's fused-kernel short pass: a pass of at most ``kernels.MAX_ROWS`` tokens (a gist question, a decode
step) through ``gistpoc.kernels`` (residual add + RMSNorm, rotary embedding + cache write, SiLU * up), ~14 kernels
a layer instead of ~43 (``ShortPass``, a part of ``AnswerEngine``)."""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from gistpoc import kernels
from gistpoc.engine.projections import _Proj, _rms


def fast_kernels_wanted(device: torch.device) -> bool:
    """The ``fast_kernels`` default: ``GISTPOC_FAST_KERNELS`` (``auto`` when unset: on where ``gistpoc.kernels`` runs;
    ``0``: off, e.g. to answer a test set both ways on one GPU; ``1``: on, an error where they cannot run)."""
    value = os.environ.get("GISTPOC_FAST_KERNELS", "auto").strip().lower()
    if value not in ("auto", "0", "1"):
        raise ValueError(f"GISTPOC_FAST_KERNELS must be auto, 0 or 1, got {value!r}")
    if value == "1" and not kernels.available(device):
        raise RuntimeError(f"GISTPOC_FAST_KERNELS=1, but the fused kernels need Triton and a CUDA device (the model is on {device})")
    return kernels.available(device) if value == "auto" else value == "1"


class ShortPass:
    """``_short_plan`` (what the short pass needs per layer) and ``_forward_short`` (the pass)."""

    def _short_plan(self) -> list | None:
        """Per layer, what ``_forward_short`` needs (norm weights and eps, the four projections); None when the
        model is not one it runs (a norm other than Llama's / Qwen2's RMSNorm, an activation other than SiLU)."""
        cfg = self.inner.config
        if getattr(cfg, "hidden_act", None) != "silu" or self.dtype not in (torch.bfloat16, torch.float16):
            return None
        plan = []
        for i, layer in enumerate(self.inner.layers):
            n1, n2 = _rms(layer.input_layernorm), _rms(layer.post_attention_layernorm)
            if n1 is None or n2 is None or type(layer.mlp.act_fn).__name__ != "SiLUActivation" and not isinstance(layer.mlp.act_fn, torch.nn.SiLU):
                return None
            attn, mlp = layer.self_attn, layer.mlp
            plan.append((n1, n2, _Proj([attn.q_proj, attn.k_proj, attn.v_proj], self.qkv[i]), _Proj([attn.o_proj]),
                         _Proj([mlp.gate_proj, mlp.up_proj], self.gate_up[i]), _Proj([mlp.down_proj])))
        final = _rms(self.inner.norm)
        if final is None:
            return None
        return {"layers": plan, "norm": final, "head": _Proj([self.lm_head])}

    def _forward_short(self, ids: torch.Tensor, pos: torch.Tensor, slots: torch.Tensor, last: torch.Tensor, span: int) -> torch.Tensor:
        """``_forward`` for a pass of at most ``kernels.MAX_ROWS`` tokens, through ``gistpoc.kernels``: the same
        arithmetic (to bf16 rounding), fewer and fused kernels, weights read once."""
        b, t = ids.shape
        x = self.inner.embed_tokens(ids)
        cos, sin = self.inner.rotary_emb(x, pos)
        rep = self.n_heads // self.kv_heads
        mask = self._mask(b, t, slots, span, x.dtype)
        res = None
        for i, (n1, n2, qkv, o_proj, gate_up, down) in enumerate(self.short["layers"]):
            attn = self.inner.layers[i].self_attn
            x, h = kernels.add_rms_norm(x, res, n1[0], n1[1])
            q = kernels.rope_to_cache(qkv(h), cos, sin, slots, self.k[i], self.v[i], self.n_heads, self.kv_heads, self.head_dim)
            qg = q.view(b, self.kv_heads, rep * t, self.head_dim)
            o = F.scaled_dot_product_attention(qg, self.k[i][:b, :, :span], self.v[i][:b, :, :span], attn_mask=mask,
                                               scale=getattr(attn, "scaling", self.head_dim ** -0.5))
            o = o.view(b, self.n_heads, t, self.head_dim).transpose(1, 2).reshape(b, t, -1)
            x, h = kernels.add_rms_norm(x, o_proj(o), n2[0], n2[1])
            res = down(kernels.silu_mul(gate_up(h)))
        x = x + res
        _, h = kernels.add_rms_norm(x[torch.arange(b, device=x.device), last], None, *self.short["norm"])
        return self.short["head"](h).float()

