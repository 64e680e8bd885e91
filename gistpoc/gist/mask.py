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
