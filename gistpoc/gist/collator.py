"""GistDataCollator: input ids, labels (answer tokens only), position ids and the 4D gist mask."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from gistpoc.gist.mask import batch_masks, gist_mask

IGNORE = -100


@dataclass
class GistExample:
    """One document sequence: ``prefix_ids`` (head + context + gist) followed by Q/A segments."""

    prefix_ids: list[int]
    gist_start: int
    gist_end: int
    segments: list[tuple[list[int], list[int]]] = field(default_factory=list)  # (question_ids, answer_ids)


def layout(ex: GistExample) -> tuple[list[int], list[int], list[int], list[tuple[int, int]]]:
    """Flatten an example: (input_ids, labels, position_ids, segment spans).

    Every segment restarts its positions at ``gist_end`` (as if it followed the gist span directly),
    which is exactly where a question continues from a saved gist cache at inference.
    """
    ids = list(ex.prefix_ids)
    labels = [IGNORE] * len(ids)
    pos = list(range(len(ids)))
    spans = []
    for q_ids, a_ids in ex.segments:
        start = len(ids)
        ids += q_ids + a_ids
        labels += [IGNORE] * len(q_ids) + list(a_ids)
        pos += list(range(ex.gist_end, ex.gist_end + len(q_ids) + len(a_ids)))
        spans.append((start, len(ids)))
    return ids, labels, pos, spans


class GistDataCollator:
    """Pads a list of GistExample into a batch; ``attention_mask`` is boolean (B, 1, L, L).

    Use ``gistpoc.gist.mask.to_additive`` (done by ``forward_masked``) before the model sees it.
    """

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, examples: list[GistExample]) -> dict[str, torch.Tensor]:
        rows = [layout(ex) for ex in examples]
        length = max(len(r[0]) for r in rows)
        input_ids = torch.full((len(rows), length), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(rows), length), IGNORE, dtype=torch.long)
        position_ids = torch.zeros((len(rows), length), dtype=torch.long)
        masks = []
        for i, ((ids, lab, pos, spans), ex) in enumerate(zip(rows, examples)):
            n = len(ids)
            input_ids[i, :n] = torch.tensor(ids)
            labels[i, :n] = torch.tensor(lab)
            position_ids[i, :n] = torch.tensor(pos)
            position_ids[i, n:] = torch.arange(n, length)
            masks.append(gist_mask(n, ex.gist_start, ex.gist_end, spans))
        return {
            "input_ids": input_ids,
            "labels": labels,
            "position_ids": position_ids,
            "attention_mask": batch_masks(masks, length),
        }


def model_dtype(model) -> torch.dtype:
    """The floating dtype activations run in (bf16 for NF4 on GPU, fp32 on CPU)."""
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)


def forward_masked(model, batch: dict[str, torch.Tensor], **kwargs):
    """Model forward with the batch's boolean 4D mask turned into the additive form, on the model's device.

    With labels, only the logits from the first labelled position on are computed (``logits_to_keep``)
    and the loss is taken there: at 8k tokens and a 128k vocabulary the full logits alone would be
    ~4 GB in fp32, more than the rest of a QLoRA step on a 24 GB card (design failure mode 4).
    The loss equals the usual shifted token-mean cross-entropy over answer tokens.
    """
    from types import SimpleNamespace

    from gistpoc.gist.mask import to_additive

    device = next(p for p in model.parameters()).device
    inputs = dict(
        input_ids=batch["input_ids"].to(device),
        position_ids=batch["position_ids"].to(device),
        attention_mask=to_additive(batch["attention_mask"].to(device), model_dtype(model)),
        use_cache=False,
        **kwargs,
    )
    labels = batch.get("labels")
    if labels is None:
        return model(**inputs)
    labels = labels.to(device)
    length = labels.shape[1]
    labelled = (labels != IGNORE).any(0).nonzero()
    first = int(labelled[0]) if len(labelled) else length - 1
    keep = length - first + 1  # the position before the first label predicts it
    out = model(**inputs, logits_to_keep=keep)
    logits = out.logits[:, :-1].float()
    target = labels[:, length - keep + 1 :]
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=IGNORE)
    return SimpleNamespace(loss=loss, logits=out.logits, attentions=getattr(out, "attentions", None))
