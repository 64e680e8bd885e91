"""Training-free baselines at the gist's memory budget: answer from exactly N cached context positions.

One causal pass over ``[head][context]`` of the base model gives every layer's keys and values (RoPE applied at
their positions), the self-information of each context token and the attention that the last ``window`` context
tokens (the observation window: question-free, so one cache serves all of a document's questions, as a gist
does) pay to earlier positions. From it, per method, a ``GistCache`` of N positions per layer:

- ``truncate_head`` / ``truncate_tail``: the first / last N context tokens' KV;
- ``kv_select`` (SnapKV-style): per layer, the N context positions before the window with the most attention from
  the window (summed over heads and window queries, average-pooled over ``pool`` neighbours), original positions;
- ``mean_pool``: the context cut into N equal segments, each segment's keys and values averaged (no training);
- ``ppl_select`` (LLMLingua-style, with the model itself as the scorer): the N context tokens with the highest
  self-information -log p(token | preceding text), in order, re-encoded alone as a short prompt of N tokens.

Every cache continues at ``next_position`` like a gist cache, so the answer pass (``answer_from_cache`` or the
compiled engine) is the one the gist methods use and sees N positions plus the question, nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gistpoc.gist.cache import GistCache
from gistpoc.methods import BUDGET_FAMILIES, parse
from gistpoc.model import rotate_half

METHODS = BUDGET_FAMILIES


def parse_method(name: str) -> tuple[str, int] | None:
    """``kv_select25`` -> (``kv_select``, 25); None for a name that is not a budget method (gistpoc.methods parses)."""
    try:
        m = parse(name)
    except ValueError:
        return None
    return (m.family, m.n) if m.kind == "budget" else None


@dataclass
class DocumentPass:
    keys: list[torch.Tensor]      # per layer (1, kv_heads, T, head_dim), T = head + context
    values: list[torch.Tensor]
    ctx_start: int
    ctx_end: int
    surprisal: torch.Tensor       # (T,) -log p(token_i | tokens_<i); 0 for the first token
    window_attention: list[torch.Tensor]  # per layer (T,): attention mass from the observation window
    window: int


def window_attention(q: torch.Tensor, keys: torch.Tensor, q_positions: torch.Tensor, scale: float) -> torch.Tensor:
    """Attention mass per key position from the window queries: ``q`` (heads, w, d) at ``q_positions`` (w,), ``keys``
    (kv_heads, T, d); causal (a query sees keys at positions <= its own). Returns (T,) summed over heads and queries."""
    heads, kv_heads = q.shape[0], keys.shape[0]
    k = keys.repeat_interleave(heads // kv_heads, dim=0).to(q.dtype)  # (heads, T, d)
    scores = torch.einsum("hwd,htd->hwt", q, k) * scale
    t = torch.arange(keys.shape[1], device=q.device)
    scores = scores.masked_fill(t[None, None, :] > q_positions[None, :, None], float("-inf"))
    return scores.float().softmax(-1).sum(dim=(0, 1))


@torch.no_grad()
def document_pass(model, prefix_ids: list[int], ctx_start: int, ctx_end: int, window: int = 16, chunk: int = 1024) -> DocumentPass:
    """The one forward pass every budget method selects from (base model, no gist tokens)."""
    if not 0 <= ctx_start < ctx_end <= len(prefix_ids):
        raise ValueError(f"context span [{ctx_start}, {ctx_end}) outside a prefix of {len(prefix_ids)} tokens")
    inner = model.get_base_model().model if hasattr(model, "get_base_model") else model.model
    lm_head = model.get_output_embeddings()
    dev = next(model.parameters()).device
    w = max(1, min(window, ctx_end - ctx_start - 1))
    win = slice(ctx_end - w, ctx_end)
    queries: dict[int, torch.Tensor] = {}

    def hook(index):
        def capture(module, args, kwargs):
            h = kwargs.get("hidden_states", args[0] if args else None)
            cos, sin = kwargs["position_embeddings"]
            q = module.q_proj(h[:, win]).view(1, w, -1, module.head_dim).transpose(1, 2)  # (1, heads, w, d)
            queries[index] = (q * cos[:, None, win] + rotate_half(q) * sin[:, None, win])[0]
        return capture

    handles = [layer.self_attn.register_forward_pre_hook(hook(i), with_kwargs=True) for i, layer in enumerate(inner.layers)]
    try:
        ids = torch.tensor([prefix_ids], device=dev)
        out = inner(input_ids=ids, position_ids=torch.arange(len(prefix_ids), device=dev)[None], use_cache=True)
    finally:
        for h in handles:
            h.remove()
    hidden = out.last_hidden_state[0]
    surprisal = torch.zeros(len(prefix_ids))
    for s in range(0, len(prefix_ids) - 1, chunk):  # logits a chunk at a time (T x vocab would not fit at 8k)
        e = min(s + chunk, len(prefix_ids) - 1)
        logp = F.log_softmax(lm_head(hidden[s:e]).float(), -1)
        surprisal[s + 1 : e + 1] = -logp.gather(1, ids[0, s + 1 : e + 1, None])[:, 0].cpu()
    keys = [layer.keys for layer in out.past_key_values.layers]
    values = [layer.values for layer in out.past_key_values.layers]
    positions = torch.arange(ctx_end - w, ctx_end, device=dev)
    scale = inner.layers[0].self_attn.scaling
    attention = [window_attention(queries[i], keys[i][0], positions, scale).cpu() for i in range(len(keys))]
    return DocumentPass(keys, values, ctx_start, ctx_end, surprisal, attention, w)


def _gather(doc: DocumentPass, per_layer: list[torch.Tensor], next_position: int) -> GistCache:
    keys = [k[:, :, idx.to(k.device), :].clone() for k, idx in zip(doc.keys, per_layer)]
    values = [v[:, :, idx.to(v.device), :].clone() for v, idx in zip(doc.values, per_layer)]
    return GistCache(keys, values, next_position, doc.ctx_end - doc.ctx_start)


def select_kv(attention: torch.Tensor, start: int, stop: int, n: int, pool: int) -> torch.Tensor:
    """The ``n`` positions in [start, stop) with the highest pooled attention, in position order."""
    scores = attention[start:stop].float()
    if pool > 1:
        scores = F.avg_pool1d(scores[None, None], pool, stride=1, padding=pool // 2, count_include_pad=False)[0, 0][: stop - start]
    top = torch.topk(scores, min(n, stop - start)).indices
    return (top.sort().values + start).long()


def budget_cache(method: str, n: int, doc: DocumentPass, model=None, ppl_ids: list[int] | None = None, pool: int = 5) -> GistCache:
    """The N-position cache of ``method`` (``ppl_select`` needs ``model`` and the prefix ids ``ppl_ids``)."""
    s, e = doc.ctx_start, doc.ctx_end
    if e - s < n:
        raise ValueError(f"{method}{n}: the context has only {e - s} tokens")
    layers = len(doc.keys)
    if method == "truncate_head":
        return _gather(doc, [torch.arange(s, s + n)] * layers, e)
    if method == "truncate_tail":
        return _gather(doc, [torch.arange(e - n, e)] * layers, e)
    if method == "kv_select":
        stop = e - doc.window if e - doc.window - s >= n else e
        return _gather(doc, [select_kv(a, s, stop, n, pool) for a in doc.window_attention], e)
    if method == "mean_pool":
        segments = torch.tensor_split(torch.arange(s, e), n)
        keys = [torch.cat([k[:, :, seg.to(k.device)].mean(2, keepdim=True) for seg in segments], 2) for k in doc.keys]
        values = [torch.cat([v[:, :, seg.to(v.device)].mean(2, keepdim=True) for seg in segments], 2) for v in doc.values]
        return GistCache(keys, values, e, e - s)
    if method == "ppl_select":
        if model is None or ppl_ids is None:
            raise ValueError("ppl_select needs the model and the prefix ids")
        keep = (torch.topk(doc.surprisal[s:e], n).indices.sort().values + s).tolist()
        ids = [ppl_ids[i] for i in keep]
        from gistpoc.gist.cache import compress_context

        return compress_context(model, ids, 0, len(ids), e - s)  # the N kept tokens alone, at positions 0..N-1
    raise ValueError(f"unknown budget method {method!r} (one of {', '.join(METHODS)})")
