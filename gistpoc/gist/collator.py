"""GistDataCollator: input ids, labels (answer tokens only), position ids and the 4D gist mask."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from gistpoc.gist.mask import batch_masks, chunked_gist_mask, gist_mask

IGNORE = -100


@dataclass
class GistExample:
    """One document sequence: ``prefix_ids`` (head + context + gist) followed by Q/A segments."""

    prefix_ids: list[int]
    gist_start: int
    gist_end: int
    segments: list[tuple[list[int], list[int]]] = field(default_factory=list)  # (question_ids, answer_ids)
    aux_segments: list[tuple[list[int], list[int]]] = field(default_factory=list)  # auxiliary (cue, continuation)
    # the text that follows the compressed context, predicted from the gist after a one-token cue (continuation)
    next_segments: list[tuple[list[int], list[int]]] = field(default_factory=list)
    # the chunk-wise layout (gist.layout: chunked): (chunk_start, gist_start, gist_end) of each chunk; gist_start and
    # gist_end are then the last chunk's gist span (segments continue after it)
    chunks: list[tuple[int, int, int]] = field(default_factory=list)

    def mask(self, seq_len: int, spans: list[tuple[int, int]], hide_context: bool = True):
        if self.chunks:
            return chunked_gist_mask(seq_len, self.chunks, spans, hide_context)
        return gist_mask(seq_len, self.gist_start, self.gist_end, spans, hide_context)


# what a label position trains: the question answers, the reconstruction from a cue (aux_segments), the continuation
MAIN, RECONSTRUCTION, CONTINUATION = 0, 1, 2


def layout(ex: GistExample) -> tuple[list[int], list[int], list[int], list[tuple[int, int]], list[int]]:
    """Flatten an example: (input_ids, labels, position_ids, segment spans, objective per position).

    Every segment restarts its positions at ``gist_end`` (as if it followed the gist span directly),
    which is exactly where a question continues from a saved gist cache at inference. Auxiliary
    segments come after the question segments, each position marked with its objective (MAIN,
    RECONSTRUCTION, CONTINUATION), so each loss can be weighted apart.
    """
    ids = list(ex.prefix_ids)
    labels = [IGNORE] * len(ids)
    pos = list(range(len(ids)))
    aux = [MAIN] * len(ids)
    spans = []
    for objective, segs in ((MAIN, ex.segments), (RECONSTRUCTION, ex.aux_segments), (CONTINUATION, ex.next_segments)):
        for q_ids, a_ids in segs:
            start = len(ids)
            ids += q_ids + a_ids
            labels += [IGNORE] * len(q_ids) + list(a_ids)
            pos += list(range(ex.gist_end, ex.gist_end + len(q_ids) + len(a_ids)))
            aux += [objective] * (len(q_ids) + len(a_ids))
            spans.append((start, len(ids)))
    return ids, labels, pos, spans, aux


class GistDataCollator:
    """Pads a list of GistExample into a batch; ``attention_mask`` is boolean (B, 1, L, L).

    Use ``gistpoc.gist.mask.to_additive`` (done by ``forward_masked``) before the model sees it.
    ``aux`` (B, L) marks each position's objective (MAIN, RECONSTRUCTION, CONTINUATION); with ``teacher_mask=True`` the batch also holds
    ``teacher_attention_mask``, the same layout with the context visible (self-distillation's teacher).
    """

    def __init__(self, pad_token_id: int, teacher_mask: bool = False):
        self.pad_token_id = pad_token_id
        self.teacher_mask = teacher_mask

    def __call__(self, examples: list[GistExample]) -> dict[str, torch.Tensor]:
        rows = [layout(ex) for ex in examples]
        length = max(len(r[0]) for r in rows)
        input_ids = torch.full((len(rows), length), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(rows), length), IGNORE, dtype=torch.long)
        position_ids = torch.zeros((len(rows), length), dtype=torch.long)
        aux = torch.zeros((len(rows), length), dtype=torch.long)
        masks, teacher = [], []
        for i, ((ids, lab, pos, spans, flags), ex) in enumerate(zip(rows, examples)):
            n = len(ids)
            input_ids[i, :n] = torch.tensor(ids)
            labels[i, :n] = torch.tensor(lab)
            position_ids[i, :n] = torch.tensor(pos)
            position_ids[i, n:] = torch.arange(n, length)
            aux[i, :n] = torch.tensor(flags)
            masks.append(ex.mask(n, spans))
            if self.teacher_mask:
                teacher.append(ex.mask(n, spans, hide_context=False))
        batch = {
            "input_ids": input_ids,
            "labels": labels,
            "position_ids": position_ids,
            "attention_mask": batch_masks(masks, length),
            "aux": aux,
        }
        if self.teacher_mask:
            batch["teacher_attention_mask"] = batch_masks(teacher, length)
        return batch


def model_dtype(model) -> torch.dtype:
    """The floating dtype activations run in (bf16 for NF4 on GPU, fp32 on CPU)."""
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)


def forward_masked(model, batch: dict[str, torch.Tensor], mask_key: str = "attention_mask", **kwargs):
    """Model forward with the batch's boolean 4D mask turned into the additive form, on the model's device.

    With labels, only the logits at positions that predict a label are computed (``logits_to_keep`` indices)
    and the loss is taken there: at 8k tokens and a 128k vocabulary the full logits alone would be
    ~4 GB in fp32, more than the rest of a QLoRA step on a 24 GB card (design failure mode 4).
    ``loss`` is the usual shifted token-mean cross-entropy over the answer tokens of the question
    segments; ``aux_loss`` the same over the reconstruction segments and ``next_loss`` over the continuation segments
    (None without any); ``label_mask`` (B, K)
    marks the question-answer targets of ``logits`` (for distillation). ``mask_key`` picks the teacher mask.
    """
    from types import SimpleNamespace

    from gistpoc.gist.mask import to_additive

    device = next(p for p in model.parameters()).device
    inputs = dict(
        input_ids=batch["input_ids"].to(device),
        position_ids=batch["position_ids"].to(device),
        attention_mask=to_additive(batch[mask_key].to(device), model_dtype(model)),
        use_cache=False,
        **kwargs,
    )
    labels = batch.get("labels")
    if labels is None:
        return model(**inputs)
    labels = labels.to(device)
    # only the positions that predict a label (in any row): rows of different lengths in one batch would
    # otherwise keep logits from the earliest label of the batch to the end of the longest row
    labelled = (labels != IGNORE).any(0).nonzero().squeeze(-1)
    if len(labelled) == 0:
        labelled = torch.tensor([labels.shape[1] - 1], device=device)
    out = model(**inputs, logits_to_keep=labelled - 1)
    logits = out.logits.float()
    target = labels[:, labelled]
    token_loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=IGNORE, reduction="none").view(target.shape)
    labelled_t = target != IGNORE
    aux = batch.get("aux")
    kind = aux.to(device)[:, labelled].long() if aux is not None else torch.zeros_like(target)
    main_t = labelled_t & (kind == MAIN)

    def mean_over(sel):
        return token_loss[sel].sum() / sel.sum() if bool(sel.any()) else None

    loss = token_loss[main_t].sum() / main_t.sum().clamp(min=1)
    aux_loss, next_loss = mean_over(labelled_t & (kind == RECONSTRUCTION)), mean_over(labelled_t & (kind == CONTINUATION))
    return SimpleNamespace(loss=loss, aux_loss=aux_loss, next_loss=next_loss, logits=out.logits, label_logits=logits, label_mask=main_t,
                           attentions=getattr(out, "attentions", None))
