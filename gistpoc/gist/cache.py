"""compress_context(): keep only the gist tokens' KV cache; answer questions from it.

A ``GistCache`` holds, for every layer, keys and values of shape (1, kv_heads, N, head_dim) with
RoPE already applied at the gist positions ``gist_start..gist_end-1``; a question continues at
position ``next_position`` (= gist_end), exactly as in training (see ``collator.layout``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass
class GistCache:
    keys: list[torch.Tensor]    # per layer: (1, kv_heads, N, head_dim)
    values: list[torch.Tensor]  # per layer: (1, kv_heads, N, head_dim)
    next_position: int          # position id of the first token after the gist span
    context_tokens: int         # how many context tokens were compressed

    @property
    def n_tokens(self) -> int:
        return self.keys[0].shape[-2]

    @property
    def nbytes(self) -> int:
        """Exact bytes held: layers x 2 x kv_heads x head_dim x N x dtype size."""
        return sum(t.numel() * t.element_size() for t in self.keys + self.values)

    def to_dynamic_cache(self):
        """A fresh DynamicCache over these tensors; decoding appends to copies, never to the saved cache."""
        from transformers import DynamicCache

        return DynamicCache(ddp_cache_data=[(k, v) for k, v in zip(self.keys, self.values)])

    def save(self, path: str | Path) -> None:
        from safetensors.torch import save_file

        tensors = {f"k.{i}": k.contiguous() for i, k in enumerate(self.keys)}
        tensors.update({f"v.{i}": v.contiguous() for i, v in enumerate(self.values)})
        meta = {"next_position": str(self.next_position), "context_tokens": str(self.context_tokens), "layers": str(len(self.keys))}
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(str(path) + ".tmp")
        save_file(tensors, str(tmp), metadata=meta)
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> "GistCache":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt", device=str(device)) as fh:
            meta = fh.metadata()
            n = int(meta["layers"])
            keys = [fh.get_tensor(f"k.{i}") for i in range(n)]
            values = [fh.get_tensor(f"v.{i}") for i in range(n)]
        return cls(keys, values, int(meta["next_position"]), int(meta["context_tokens"]))

    def describe(self) -> str:
        return json.dumps({"n_tokens": self.n_tokens, "layers": len(self.keys), "nbytes": self.nbytes, "next_position": self.next_position})


def cache_nbytes(past) -> int:
    """Bytes of every key/value tensor in a transformers Cache (or legacy tuple)."""
    total = 0
    layers = getattr(past, "layers", None)
    if layers is not None:
        for layer in layers:
            for t in (getattr(layer, "keys", None), getattr(layer, "values", None)):
                if isinstance(t, torch.Tensor):
                    total += t.numel() * t.element_size()
        return total
    for k, v in past:
        total += k.numel() * k.element_size() + v.numel() * v.element_size()
    return total


def _device(model) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def compress_context(model, prefix_ids: list[int], gist_start: int, gist_end: int, context_tokens: int | None = None) -> GistCache:
    """One causal forward pass over head + context + gist tokens; keep only the gist span's KV.

    ``prefix_ids`` ends with the N gist tokens (``prefix_ids[gist_start:gist_end]``).
    """
    if not 0 <= gist_start < gist_end == len(prefix_ids):
        raise ValueError(f"gist span [{gist_start}, {gist_end}) must end the prefix of {len(prefix_ids)} tokens")
    dev = _device(model)
    ids = torch.tensor([prefix_ids], device=dev)
    out = model(input_ids=ids, position_ids=torch.arange(len(prefix_ids), device=dev)[None], use_cache=True)
    past = out.past_key_values
    keys, values = [], []
    for layer in past.layers:
        keys.append(layer.keys[:, :, gist_start:gist_end, :].clone())
        values.append(layer.values[:, :, gist_start:gist_end, :].clone())
    del out, past
    return GistCache(keys, values, gist_end, context_tokens if context_tokens is not None else gist_start)


@torch.no_grad()
def compress_chunked(model, prefix_ids: list[int], chunks: list[tuple[int, int, int]], context_tokens: int | None = None) -> GistCache:
    """The chunk-wise layout's cache (``gist.layout: chunked``), chunk by chunk: the head once, then each chunk and
    its gist tokens continue a cache holding only the head and the earlier gists, so a chunk never sees an earlier
    chunk's tokens and memory stays at one chunk's activations. Keeps every chunk's gist KV (K chunks x N), RoPE at
    their own positions; a question continues at the last gist span's end. The same attention pattern as
    ``chunked_gist_mask`` on the whole sequence (tests/unit/gist/test_gist_core.py checks the logits)."""
    from transformers import DynamicCache

    if not chunks or chunks[-1][2] != len(prefix_ids):
        raise ValueError(f"chunks must end the prefix of {len(prefix_ids)} tokens, got {chunks[-1:] or 'none'}")
    dev = _device(model)
    ids = torch.tensor([prefix_ids], device=dev)
    head_end = chunks[0][0]
    head: list[tuple[torch.Tensor, torch.Tensor]] = []
    if head_end:
        out = model(input_ids=ids[:, :head_end], position_ids=torch.arange(head_end, device=dev)[None], use_cache=True)
        head = [(layer.keys, layer.values) for layer in out.past_key_values.layers]
    keys: list[list[torch.Tensor]] = []
    values: list[list[torch.Tensor]] = []
    for cs, gs, ge in chunks:
        if head or keys:
            n_layers = len(head) if head else len(keys)
            data = []
            for i in range(n_layers):
                ks = ([head[i][0]] if head else []) + (keys[i] if keys else [])
                vs = ([head[i][1]] if head else []) + (values[i] if values else [])
                data.append((torch.cat(ks, dim=-2), torch.cat(vs, dim=-2)))
            past = DynamicCache(ddp_cache_data=data)
        else:
            past = None
        out = model(input_ids=ids[:, cs:ge], position_ids=torch.arange(cs, ge, device=dev)[None], past_key_values=past, use_cache=True)
        layers = out.past_key_values.layers
        if not keys:
            keys, values = [[] for _ in layers], [[] for _ in layers]
        for i, layer in enumerate(layers):
            keys[i].append(layer.keys[:, :, -(ge - gs):, :].clone())
            values[i].append(layer.values[:, :, -(ge - gs):, :].clone())
        del out, past
    n_ctx = context_tokens if context_tokens is not None else sum(gs - cs for cs, gs, _ in chunks)
    return GistCache([torch.cat(k, dim=-2) for k in keys], [torch.cat(v, dim=-2) for v in values], chunks[-1][2], n_ctx)


def compress(model, enc) -> GistCache:
    """The gist cache of an ``EncodedPrompt`` in either layout: N gists after the whole document
    (``compress_context``) or N per chunk (``compress_chunked``)."""
    if enc.chunks:
        return compress_chunked(model, enc.prefix_ids, enc.chunks, enc.context_tokens)
    return compress_context(model, enc.prefix_ids, enc.gist_start, enc.gist_end, enc.context_tokens)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Generation:
    token_ids: list[int]
    ttft_s: float          # prompt forward -> first token available
    decode_s: float        # time for the remaining tokens
    kv_bytes: int          # KV cache held at the end of generation
    first_logits: torch.Tensor  # logits of the last prompt position (for equivalence checks)

    @property
    def decode_tokens_per_s(self) -> float:
        n = len(self.token_ids) - 1
        return n / self.decode_s if n > 0 and self.decode_s > 0 else float("nan")


@torch.no_grad()
def greedy_generate(model, input_ids: list[int], start_position: int, eos_ids: list[int], max_new_tokens: int, past=None) -> Generation:
    """Greedy decoding shared by every method: the prompt ``input_ids`` continues ``past`` (if any)
    at ``start_position``. Stops at any end-of-turn id (not included in the output)."""
    dev = _device(model)
    ids = torch.tensor([input_ids], device=dev)
    pos = torch.arange(start_position, start_position + len(input_ids), device=dev)[None]
    _sync(dev)
    t0 = time.perf_counter()
    out = model(input_ids=ids, position_ids=pos, past_key_values=past, use_cache=True)
    next_id = int(out.logits[0, -1].argmax())
    _sync(dev)
    ttft = time.perf_counter() - t0
    first_logits = out.logits[0, -1].float().cpu()
    past = out.past_key_values
    tokens = []
    position = start_position + len(input_ids)
    t1 = time.perf_counter()
    while True:
        if next_id in eos_ids:
            break
        tokens.append(next_id)
        if len(tokens) >= max_new_tokens:
            break
        out = model(
            input_ids=torch.tensor([[next_id]], device=dev),
            position_ids=torch.tensor([[position]], device=dev),
            past_key_values=past,
            use_cache=True,
        )
        past = out.past_key_values
        position += 1
        next_id = int(out.logits[0, -1].argmax())
    _sync(dev)
    return Generation(tokens, ttft, time.perf_counter() - t1, cache_nbytes(past), first_logits)


def answer_from_cache(model, cache: GistCache, question_ids: list[int], eos_ids: list[int], max_new_tokens: int) -> Generation:
    """Decode an answer to ``question_ids`` seeing only the gist KV (the context itself is not needed)."""
    dev = _device(model)
    if cache.keys[0].device != dev:
        cache = GistCache([k.to(dev) for k in cache.keys], [v.to(dev) for v in cache.values], cache.next_position, cache.context_tokens)
    return greedy_generate(model, question_ids, cache.next_position, eos_ids, max_new_tokens, past=cache.to_dynamic_cache())
