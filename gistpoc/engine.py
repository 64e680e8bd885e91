"""The compiled answer engine (``eval.engine: compiled``): a static KV cache, batched prompts, CUDA graphs.

The eager path (``gistpoc.gist.cache.greedy_generate``) runs the Hugging Face forward once per token with a
growing ``DynamicCache``: at 25 cached gist positions and a 32-token question nearly all of its time goes to Python
and kernel launches. This engine runs the same decoder (the model's own embedding, norms, projections, MLPs,
rotary embedding and head: LoRA, bitsandbytes 4-bit or int4 linears included) over a cache of fixed size:

- slots vs positions: every row owns ``S`` cache slots; a token is written to a slot (``slots``) and rotated at
  its own position (``pos``), so a gist cache made at positions ``gist_start..gist_end-1`` is copied into slots
  ``0..N-1`` and a question continues at position ``gist_end`` from slot ``N``, exactly as the eager path does;
- a batch of prompts (e.g. all questions of one document against its one gist cache) is right-padded to one
  length; ``valid`` marks the slots that hold real tokens, and a query at slot ``s`` sees the valid slots
  ``<= s``: padding is never attended to, so each row's tokens equal its unbatched greedy tokens;
- on CUDA the prompt pass (up to ``graph_max_tokens``, padded to a bucket) and the one-token decode step are
  captured as CUDA graphs and replayed (one launch per pass instead of hundreds); longer prompts (full context)
  run the same function uncaptured. On CPU nothing is captured: the same function runs directly.

- with Triton on CUDA (``fast_kernels``, the default there) a pass of at most ``kernels.MAX_ROWS`` tokens (a gist
  question, a decode step) runs ``_forward_short``: the same layer in ~14 kernels instead of ~43
  (``gistpoc.kernels``: residual add + RMSNorm, rotary embedding + cache write, SiLU * up). The projections
  stay with cuBLAS (bf16) or with the modules themselves (bitsandbytes NF4, LoRA layers): measured on an H200 at
  these sizes both beat the Triton GEMMs of ``gistpoc.kernels`` (``bench/engine_kernels.py``).

Llama and Qwen2 (q/k/v biases live in the projections) share this path.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gistpoc import kernels
from gistpoc.gist.cache import Generation, GistCache
from gistpoc.model import rotate_half


def _decoder(model):
    """(inner decoder, lm_head) of a causal LM, a PEFT model (unwrapped) or a merged one."""
    m = model.get_base_model() if hasattr(model, "get_base_model") else model
    inner = getattr(m, "model", None)
    if inner is None or not hasattr(inner, "layers") or not hasattr(m, "lm_head"):
        raise TypeError(f"the compiled engine needs a decoder-only causal LM with .model.layers and .lm_head, got {type(m).__name__}")
    return inner, m.lm_head


def _fuse(linears: list) -> tuple[torch.Tensor, torch.Tensor | None, list[int]] | None:
    """One weight for several plain ``nn.Linear`` that read the same input (q/k/v; gate/up): one GEMM instead of
    three small ones. The modules keep working: their weights become views of the fused tensor (no copy kept).
    None when any of them is not a plain float linear (LoRA layers, bitsandbytes, int4)."""
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


def _is_nf4(module) -> bool:
    """A bitsandbytes 4-bit linear holding NF4 weights."""
    qs = getattr(getattr(module, "weight", None), "quant_state", None)
    return type(module).__name__ == "Linear4bit" and qs is not None and getattr(qs, "quant_type", None) == "nf4"


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
        self.weight = self.bias = None
        self.flat = [_flat_nf4_state(m) for m in modules]
        if fused is not None:
            self.weight, self.bias = fused[0], fused[1]
        elif len(modules) == 1 and type(modules[0]) is torch.nn.Linear:
            self.weight, self.bias = modules[0].weight, modules[0].bias

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight is not None:
            return F.linear(x, self.weight, self.bias)
        outs = [m(x) if flat is None else _nf4_matmul(m, flat, x) for m, flat in zip(self.modules, self.flat)]
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=-1)


def _rms(norm) -> tuple[torch.Tensor, float] | None:
    """(weight, eps) of a Llama / Qwen2 RMSNorm (weight * normalised x), None for any other norm."""
    if type(norm).__name__ not in ("LlamaRMSNorm", "Qwen2RMSNorm") or not hasattr(norm, "variance_epsilon"):
        return None
    return norm.weight, float(norm.variance_epsilon)


@dataclass
class _Static:
    """Input buffers of one captured shape (batch, tokens) and, on CUDA, its graph."""
    ids: torch.Tensor     # (B, T) long
    pos: torch.Tensor     # (B, T) long
    slots: torch.Tensor   # (T,) long
    last: torch.Tensor    # (B,) long: index of each row's last real token in this pass
    logits: torch.Tensor | None = None  # (B, V) float32, written by the graph
    graph: "torch.cuda.CUDAGraph | None" = None


def fast_kernels_wanted(device: torch.device) -> bool:
    """The ``fast_kernels`` default: ``GISTPOC_FAST_KERNELS`` (``auto`` when unset: on where ``gistpoc.kernels`` runs;
    ``0``: off, e.g. to answer a test set both ways on one GPU; ``1``: on, an error where they cannot run)."""
    value = os.environ.get("GISTPOC_FAST_KERNELS", "auto").strip().lower()
    if value not in ("auto", "0", "1"):
        raise ValueError(f"GISTPOC_FAST_KERNELS must be auto, 0 or 1, got {value!r}")
    if value == "1" and not kernels.available(device):
        raise RuntimeError(f"GISTPOC_FAST_KERNELS=1, but the fused kernels need Triton and a CUDA device (the model is on {device})")
    return kernels.available(device) if value == "auto" else value == "1"


class AnswerEngine:
    """Greedy answers for a batch of prompts that may continue one shared cached prefix (a gist cache).

    ``max_batch`` rows of ``max_len`` slots each are allocated once; ``generate`` grows them when asked for
    more. ``graphs`` (default: on for CUDA) captures passes of up to ``graph_max_tokens`` tokens; ``fast_kernels``
    (default: ``fast_kernels_wanted``, on where ``gistpoc.kernels`` runs, i.e. CUDA with Triton) runs short passes
    through them.
    """

    def __init__(self, model, max_batch: int = 1, max_len: int = 256, graphs: bool | None = None, graph_max_tokens: int = 2048,
                 fast_kernels: bool | None = None):
        self.model = model
        self.inner, self.lm_head = _decoder(model)
        cfg = self.inner.config
        self.n_layers = len(self.inner.layers)
        self.n_heads = cfg.num_attention_heads
        self.kv_heads = getattr(cfg, "num_key_value_heads", None) or self.n_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.n_heads
        p = next(model.parameters())
        self.device = p.device
        self.dtype = self.inner.embed_tokens.weight.dtype if self.inner.embed_tokens.weight.is_floating_point() else torch.bfloat16
        self.graphs = (self.device.type == "cuda") if graphs is None else graphs
        self.graph_max_tokens = graph_max_tokens
        with torch.no_grad():
            self.qkv = [_fuse([layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj]) for layer in self.inner.layers]
            self.gate_up = [_fuse([layer.mlp.gate_proj, layer.mlp.up_proj]) for layer in self.inner.layers]
            use = fast_kernels_wanted(self.device) if fast_kernels is None else fast_kernels
            self.short = self._short_plan() if use else None
        self._pool = None
        self._static: dict[tuple[int, int], _Static] = {}
        self.batch = self.max_len = 0
        self._allocate(max_batch, max_len)

    # -- cache -------------------------------------------------------------------------------------------------
    def _allocate(self, batch: int, max_len: int) -> None:
        if batch <= self.batch and max_len <= self.max_len:
            return
        # slots grow in steps of 256: a run over documents of many lengths re-allocates (and re-captures) rarely
        self.batch, self.max_len = max(batch, self.batch), max(256 * math.ceil(max_len / 256), self.max_len)
        self._static.clear()  # captured graphs point at the old buffers
        self._pool = None
        shape = (self.batch, self.kv_heads, self.max_len, self.head_dim)
        self.k = [torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in range(self.n_layers)]
        self.v = [torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in range(self.n_layers)]
        self.valid = torch.zeros(self.batch, self.max_len, dtype=torch.bool, device=self.device)
        self.slot_index = torch.arange(self.max_len, device=self.device)

    def kv_bytes(self, rows: int, slots: int) -> int:
        """Bytes of KV that ``rows`` answers hold after ``slots`` cache slots are filled (as ``GistCache.nbytes``)."""
        return 2 * self.n_layers * rows * self.kv_heads * slots * self.head_dim * self.k[0].element_size()

    # -- the pass ----------------------------------------------------------------------------------------------
    def _qkv(self, i: int, attn, h: torch.Tensor):
        fused = self.qkv[i]
        if fused is None:
            return attn.q_proj(h), attn.k_proj(h), attn.v_proj(h)
        return F.linear(h, fused[0], fused[1]).split(fused[2], dim=-1)

    def _project(self, i: int, layer, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        """Layer ``i``'s queries, keys and values of ``x`` (B, T, hidden) as (B, heads, T, D), RoPE applied."""
        b, t = x.shape[:2]
        q, k, v = self._qkv(i, layer.self_attn, layer.input_layernorm(x))
        q = q.view(b, t, self.n_heads, self.head_dim).transpose(1, 2)
        k = k.view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        v = v.view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin, v

    def _mlp(self, i: int, mlp, h: torch.Tensor) -> torch.Tensor:
        fused = self.gate_up[i]
        if fused is None:
            return mlp(h)
        gate, up = F.linear(h, fused[0], fused[1]).split(fused[2], dim=-1)
        return mlp.down_proj(mlp.act_fn(gate) * up)

    def _mask(self, b: int, t: int, slots: torch.Tensor, span: int, dtype: torch.dtype) -> torch.Tensor:
        """Additive attention mask (B, 1, rep*T, span): a query at slot s sees the valid slots <= s; the grouped-query
        heads of one KV head share a row of it."""
        allowed = self.valid[:b, None, :span] & (self.slot_index[None, None, :span] <= slots[None, :, None])  # (B, T, span)
        mask = torch.zeros(allowed.shape, dtype=dtype, device=self.device).masked_fill_(~allowed, float("-inf"))
        return mask[:, None].expand(b, 1, t, span).repeat(1, 1, self.n_heads // self.kv_heads, 1)

    def _forward(self, ids: torch.Tensor, pos: torch.Tensor, slots: torch.Tensor, last: torch.Tensor, span: int) -> torch.Tensor:
        """Write the KV of ``ids`` (at positions ``pos``) into ``slots`` of every row and return the float32 logits
        of each row's token ``last``; attention reads the first ``span`` slots (all written slots lie there).
        Shapes are static; no host synchronisation (graph-capturable)."""
        b, t = ids.shape
        x = self.inner.embed_tokens(ids)
        cos, sin = self.inner.rotary_emb(x, pos)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        rep = self.n_heads // self.kv_heads
        mask = self._mask(b, t, slots, span, x.dtype)
        for i, layer in enumerate(self.inner.layers):
            attn = layer.self_attn
            q, k, v = self._project(i, layer, x, cos, sin)
            kc, vc = self.k[i][:b, :, :span], self.v[i][:b, :, :span]
            kc.index_copy_(2, slots, k.to(kc.dtype))
            vc.index_copy_(2, slots, v.to(vc.dtype))
            # (B, H, T, D) -> (B, KV, rep*T, D): the rep query heads of one KV head attend as one group
            qg = q.reshape(b, self.kv_heads, rep * t, self.head_dim)
            o = F.scaled_dot_product_attention(qg, kc, vc, attn_mask=mask, scale=getattr(attn, "scaling", self.head_dim ** -0.5))
            o = o.reshape(b, self.n_heads, t, self.head_dim).transpose(1, 2).reshape(b, t, -1)
            x = x + attn.o_proj(o)
            x = x + self._mlp(i, layer.mlp, layer.post_attention_layernorm(x))
        h = self.inner.norm(x[torch.arange(b, device=x.device), last])
        return self.lm_head(h).float()

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

    def _prefill_long(self, ids, pos, slots, last) -> torch.Tensor:
        """An uncaptured pass over a long prompt with no cached prefix (batch 1, slots 0..T-1): plain causal
        attention over the first T slots (flash / memory-efficient kernels, no (T, S) mask)."""
        b, t = ids.shape
        x = self.inner.embed_tokens(ids)
        cos, sin = self.inner.rotary_emb(x, pos)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        rep = self.n_heads // self.kv_heads
        for i, layer in enumerate(self.inner.layers):
            attn = layer.self_attn
            q, k, v = self._project(i, layer, x, cos, sin)
            self.k[i][:b, :, :t] = k.to(self.dtype)
            self.v[i][:b, :, :t] = v.to(self.dtype)
            kk, vv = (k, v) if rep == 1 else (k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1))
            o = F.scaled_dot_product_attention(q, kk.to(q.dtype), vv.to(q.dtype), is_causal=True, scale=getattr(attn, "scaling", self.head_dim ** -0.5))
            x = x + attn.o_proj(o.transpose(1, 2).reshape(b, t, -1))
            x = x + self._mlp(i, layer.mlp, layer.post_attention_layernorm(x))
        h = self.inner.norm(x[torch.arange(b, device=x.device), last])
        return self.lm_head(h).float()

    def _span(self, end: int) -> int:
        """Slots attention reads when the highest written slot is ``end - 1``: a multiple of 256 (few graphs)."""
        return min(self.max_len, 256 * math.ceil(end / 256))

    def _static_for(self, b: int, t: int, span: int) -> _Static:
        key = (b, t, span)
        st = self._static.get(key)
        if st is not None:
            return st
        z = lambda *s: torch.zeros(*s, dtype=torch.long, device=self.device)  # noqa: E731
        st = _Static(z(b, t), z(b, t), torch.arange(t, device=self.device), z(b))
        if self.graphs:
            # warm up on a side stream (allocator, lazy inits), then capture; the caller fills the buffers later
            keep = self.valid.clone()
            self.valid[:b] = True  # no fully masked row during warm-up
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                for _ in range(2):
                    self._pass(st.ids, st.pos, st.slots, st.last, span)
            torch.cuda.current_stream(self.device).wait_stream(side)
            if self._pool is None:
                self._pool = torch.cuda.graph_pool_handle()
            st.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(st.graph, pool=self._pool):
                st.logits = self._pass(st.ids, st.pos, st.slots, st.last, span)
            self.valid.copy_(keep)
        self._static[key] = st
        return st

    def _pass(self, ids: torch.Tensor, pos: torch.Tensor, slots: torch.Tensor, last: torch.Tensor, span: int) -> torch.Tensor:
        """One pass: through the Triton kernels when they are on and the pass is short, else the PyTorch layer."""
        if self.short is not None and ids.numel() <= kernels.MAX_ROWS:
            return self._forward_short(ids, pos, slots, last, span)
        return self._forward(ids, pos, slots, last, span)

    def _run(self, ids: torch.Tensor, pos: torch.Tensor, slots: torch.Tensor, last: torch.Tensor, span: int) -> torch.Tensor:
        b, t = ids.shape
        if not self.graphs or t > self.graph_max_tokens:
            return self._pass(ids, pos, slots, last, span)
        st = self._static_for(b, t, span)
        st.ids.copy_(ids)
        st.pos.copy_(pos)
        st.slots.copy_(slots)
        st.last.copy_(last)
        st.graph.replay()
        return st.logits

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @staticmethod
    def bucket(n: int) -> int:
        """Padded pass length: 16, 32, 64, then multiples of 64 (few captured shapes, little padding)."""
        if n <= 64:
            return max(16, 1 << math.ceil(math.log2(max(n, 1))))
        return 64 * math.ceil(n / 64)

    # -- generation --------------------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, prompts: list[list[int]], start_position: int | list[int], eos_ids: list[int], max_new_tokens: int,
                 prefix: GistCache | list[GistCache] | None = None) -> list[Generation]:
        """Greedy answers to ``prompts`` (token ids), each continuing ``prefix`` (if given) at ``start_position``.
        ``prefix`` and ``start_position`` may be given per row (caches of one size, e.g. several methods' N-position
        caches of one document answered in one batch).

        Returns one ``Generation`` per prompt; ``ttft_s`` is the batch's prompt pass (all rows get their first
        token together), ``decode_s`` the rest, ``kv_bytes`` the KV that row holds at its end (prefix + its
        prompt + its answer, as the eager path counts it)."""
        if not prompts or any(len(p) == 0 for p in prompts):
            raise ValueError("every prompt needs at least one token")
        b = len(prompts)
        prefixes = prefix if isinstance(prefix, list) else [prefix] * b if prefix is not None else None
        starts = start_position if isinstance(start_position, list) else [start_position] * b
        if prefixes is not None and (len(prefixes) != b or len({c.n_tokens for c in prefixes}) != 1):
            raise ValueError("one prefix per prompt, all of one size")
        if len(starts) != b:
            raise ValueError("one start position per prompt")
        n_prefix = prefixes[0].n_tokens if prefixes is not None else 0
        lengths = [len(p) for p in prompts]
        longest = max(lengths)
        # one prompt with nothing cached before it (full context, RAG): plain causal attention (flash kernels)
        long_pass = b == 1 and n_prefix == 0 and longest > 64
        graph_prefill = self.graphs and not long_pass and longest <= self.graph_max_tokens
        t = self.bucket(longest) if graph_prefill else longest
        self._allocate(b, n_prefix + t + max_new_tokens)
        prompt_span = self._span(n_prefix + t)
        if self.graphs:  # capture first: warm-up passes write to the cache
            if graph_prefill:
                self._static_for(b, t, prompt_span)
            for end in range(n_prefix + t + 1, n_prefix + t + max_new_tokens + 1, 256):
                self._static_for(b, 1, self._span(end))
            self._static_for(b, 1, self._span(n_prefix + t + max_new_tokens))
        dev = self.device
        ids = torch.zeros(b, t, dtype=torch.long)
        pos = torch.zeros(b, t, dtype=torch.long)
        for r, p in enumerate(prompts):
            ids[r, : len(p)] = torch.tensor(p)
            pos[r] = starts[r] + torch.arange(t).clamp(max=len(p) - 1)  # padding repeats the last position
        valid = torch.zeros(b, self.max_len, dtype=torch.bool)
        valid[:, :n_prefix] = True
        for r, n in enumerate(lengths):
            valid[r, n_prefix : n_prefix + n] = True
        last = torch.tensor([n - 1 for n in lengths])
        slots = torch.arange(n_prefix, n_prefix + t)
        ids, pos, last, slots = ids.to(dev), pos.to(dev), last.to(dev), slots.to(dev)
        if prefixes is not None:
            shared = all(c is prefixes[0] for c in prefixes)
            for i in range(self.n_layers):
                if shared:
                    self.k[i][:b, :, :n_prefix] = prefixes[0].keys[i].to(dev, self.dtype)
                    self.v[i][:b, :, :n_prefix] = prefixes[0].values[i].to(dev, self.dtype)
                else:
                    for r, c in enumerate(prefixes):
                        self.k[i][r, :, :n_prefix] = c.keys[i][0].to(dev, self.dtype)
                        self.v[i][r, :, :n_prefix] = c.values[i][0].to(dev, self.dtype)
        self.valid.zero_()
        self.valid[:b] = valid.to(dev)
        self._sync()
        t0 = time.perf_counter()
        logits = self._prefill_long(ids, pos, slots, last) if long_pass else self._run(ids, pos, slots, last, prompt_span)
        first_logits = logits.clone()
        nxt = logits.argmax(-1)
        nxt_host = nxt.tolist()  # synchronises
        ttft = time.perf_counter() - t0
        tokens: list[list[int]] = [[] for _ in range(b)]
        done = [False] * b
        ended = [False] * b  # stopped at an end-of-turn id (its last token was fed back, so it is in the cache)
        eos = set(eos_ids)

        def take(chosen: list[int]) -> None:  # each unfinished row keeps its token or stops at end of turn / budget
            for r in range(b):
                if done[r]:
                    continue
                if chosen[r] in eos:
                    done[r] = ended[r] = True
                else:
                    tokens[r].append(chosen[r])
                    done[r] = len(tokens[r]) >= max_new_tokens

        take(nxt_host)
        step_pos = torch.tensor([st + n for st, n in zip(starts, lengths)], device=dev)[:, None]
        zero = torch.zeros(b, dtype=torch.long, device=dev)
        t1 = time.perf_counter()
        slot = n_prefix + t
        while not all(done):
            s = torch.tensor([slot], device=dev)
            self.valid[:b, slot] = True
            logits = self._run(nxt[:, None], step_pos, s, zero, self._span(slot + 1))
            nxt = logits.argmax(-1)
            take(nxt.tolist())
            step_pos = step_pos + 1
            slot += 1
        self._sync()
        decode = time.perf_counter() - t1
        return [Generation(tokens[r], ttft, decode, self.kv_bytes(1, n_prefix + lengths[r] + len(tokens[r]) - (0 if ended[r] else 1)),
                           first_logits[r].cpu()) for r in range(b)]

    def answer_from_cache(self, cache: GistCache, questions: list[list[int]], eos_ids: list[int], max_new_tokens: int) -> list[Generation]:
        """All ``questions`` answered from one gist cache in one batch (the cache copied into every row)."""
        return self.generate(questions, cache.next_position, eos_ids, max_new_tokens, prefix=cache)
