"""The gist attention mask: causal, and nothing after the gist span may see the context before it.

Design section 4: ``mask[i, :, gist_end:, :gist_start] = False``. Question/answer segments that follow
one gist span additionally cannot see each other, so one sequence trains all questions of a document
exactly as inference sees them (gist KV + the question alone).
"""

from __future__ import annotations

import torch


def gist_mask(seq_len: int, gist_start: int, gist_end: int, segments: list[tuple[int, int]] | None = None, hide_context: bool = True) -> torch.Tensor:
    """Boolean (seq_len, seq_len) mask, True = may attend.

    Rows are queries, columns keys. ``segments`` are [start, end) spans after ``gist_end``; each sees
    the gist span and itself (causally), not the context and not the other segments. With an empty
    gist span (gist_start == gist_end) the mask is plain causal: no compression, nothing hidden.
    ``hide_context=False`` keeps the segments' isolation but lets them see the context: the
    full-context teacher of self-distillation, on the very same token layout.
    """
    mask = torch.ones(seq_len, seq_len, dtype=torch.bool).tril()
    if gist_end > gist_start:
        if hide_context:
            mask[gist_end:, :gist_start] = False
        for s, e in segments or []:
            mask[s:e, gist_end:s] = False
    return mask


def chunked_gist_mask(seq_len: int, chunks: list[tuple[int, int, int]], segments: list[tuple[int, int]] | None = None,
                      hide_context: bool = True) -> torch.Tensor:
    """Boolean (seq_len, seq_len) mask of the chunk-wise layout (``gist.layout: chunked``), True = may attend.

    ``chunks`` are (chunk_start, gist_start, gist_end) in order: the context's k-th chunk is
    ``[chunk_start, gist_start)``, its N gist tokens ``[gist_start, gist_end)``; what precedes the first chunk is the
    head. Causal, and: chunk k and its gists see the head, the earlier chunks' gists and chunk k, never an earlier
    chunk's tokens; everything after the last gist span sees the gists only (neither the head nor any chunk), as
    with one gist span; ``segments`` after it are isolated from each other as in ``gist_mask``. With one chunk this is
    ``gist_mask``. ``hide_context=False``: the same layout with the context visible (the distillation teacher).
    """
    mask = torch.ones(seq_len, seq_len, dtype=torch.bool).tril()
    if not chunks:
        return mask
    last_end = chunks[-1][2]
    if hide_context:
        for k, (cs, _, ge) in enumerate(chunks):
            for pcs, pgs, _ in chunks[:k]:
                mask[cs:ge, pcs:pgs] = False
        mask[last_end:, : chunks[0][0]] = False
        for cs, gs, _ in chunks:
            mask[last_end:, cs:gs] = False
    for s, e in segments or []:
        mask[s:e, last_end:s] = False
    return mask


def to_additive(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Boolean mask -> additive float mask (0 where allowed, dtype min where blocked).

    Eager attention in the pinned transformers adds the mask to the scores, so it must be float.
    """
    out = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
    return out.masked_fill(~mask, torch.finfo(dtype).min)


def batch_masks(masks: list[torch.Tensor], length: int) -> torch.Tensor:
    """Stack per-example boolean masks into (B, 1, L, L), right-padded.

    Padding rows attend to themselves only, so no row is fully masked (which would give NaN).
    """
    out = torch.zeros(len(masks), 1, length, length, dtype=torch.bool)
    eye = torch.eye(length, dtype=torch.bool)
    for i, m in enumerate(masks):
        n = m.shape[0]
        out[i, 0] = eye
        out[i, 0, :n, :n] = m
    return out
