"""``AnswerEngine``: the static KV cache, batched prompts and greedy generation (see ``gistpoc.engine``)."""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F

from gistpoc.engine.graphs import CapturedPasses, _Static
from gistpoc.engine.projections import _decoder, _fuse, _linear
from gistpoc.engine.short_pass import ShortPass, fast_kernels_wanted
from gistpoc.gist.cache import Generation, GistCache
from gistpoc.model import rotate_half


class AnswerEngine(ShortPass, CapturedPasses):
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
        return _linear(fused, h).split(fused[2], dim=-1)

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
        gate, up = _linear(fused, h).split(fused[2], dim=-1)
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
        ``prefix`` and ``start_position`` may be given per row (e.g. several methods' N-position caches of one
        document, or several documents' full caches, answered in one batch): caches of different sizes fill the first
        slots of their rows and the slots up to the longest stay masked, so each row sees its own cache only.

        Returns one ``Generation`` per prompt; ``ttft_s`` is the batch's prompt pass (all rows get their first
        token together), ``decode_s`` the rest, ``kv_bytes`` the KV that row holds at its end (prefix + its
        prompt + its answer, as the eager path counts it)."""
        if not prompts or any(len(p) == 0 for p in prompts):
            raise ValueError("every prompt needs at least one token")
        b = len(prompts)
        prefixes = prefix if isinstance(prefix, list) else [prefix] * b if prefix is not None else None
        starts = start_position if isinstance(start_position, list) else [start_position] * b
        if prefixes is not None and len(prefixes) != b:
            raise ValueError("one prefix per prompt")
        if len(starts) != b:
            raise ValueError("one start position per prompt")
        own = [c.n_tokens for c in prefixes] if prefixes is not None else [0] * b   # each row's cached slots
        n_prefix = max(own)
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
        for r, n in enumerate(lengths):
            valid[r, : own[r]] = True
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
                        self.k[i][r, :, : own[r]] = c.keys[i][0].to(dev, self.dtype)
                        self.v[i][r, :, : own[r]] = c.values[i][0].to(dev, self.dtype)
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
        return [Generation(tokens[r], ttft, decode, self.kv_bytes(1, own[r] + lengths[r] + len(tokens[r]) - (0 if ended[r] else 1)),
                           first_logits[r].cpu()) for r in range(b)]

    def answer_from_cache(self, cache: GistCache, questions: list[list[int]], eos_ids: list[int], max_new_tokens: int) -> list[Generation]:
        """All ``questions`` answered from one gist cache in one batch (the cache copied into every row)."""
        return self.generate(questions, cache.next_position, eos_ids, max_new_tokens, prefix=cache)

