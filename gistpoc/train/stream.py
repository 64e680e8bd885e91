"""An unbounded stream of passkey windows from the training documents, and the length curriculum's gate.

The training budget is a number of optimizer steps, not epochs over the documents: every micro-batch is
either ``batch_size`` passkey windows (probability ``train.passkey_share``) or ``batch_size`` training
documents with all their questions. A passkey window is a random stretch of real training text (documents
joined end to end, so a window may be longer than one document) of the current curriculum stage's length,
with a random key planted at a random depth in one of the wordings of ``gistpoc.data.passkey.WORDINGS``.
Every draw is a pure function of (seed, step, micro-batch): a resumed run sees exactly the batches an
uninterrupted one would, without saving any random state.

Only texts of the training split ever enter ``TextPool`` for training; held-out windows for the gate come
from the validation documents (``heldout_windows``).
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field

import numpy as np

from gistpoc.data.passkey import WORDINGS, inject_passkey
from gistpoc.gist.template import encode_answer, encode_prefix, encode_question
from gistpoc.train.examples import context_spans


class TextPool:
    """Texts joined with blank lines and tokenised once; ``window`` cuts a token-length stretch out of it.

    Token offsets are kept as one integer array (a stage-1 pool of text at volume holds tens of millions of tokens). A
    pool of up to ``PIECE_CHARS`` characters is tokenised in one call; a larger one in pieces of whole texts, so a
    token never spans two pieces (the join between pieces is a blank line, where tokens end anyway)."""

    PIECE_CHARS = 1 << 23

    def __init__(self, tokenizer, texts: list[str], doc_ids: list[str]):
        if not texts:
            raise ValueError("TextPool needs at least one text")
        self.text = "\n\n".join(texts)
        self.doc_spans = []  # (char_start, char_end, doc_id): which document a character came from
        pos = 0
        for t, d in zip(texts, doc_ids):
            self.doc_spans.append((pos, pos + len(t), d))
            pos += len(t) + 2
        pieces, start = [], 0
        for s, e, _ in self.doc_spans:
            if e - start > self.PIECE_CHARS and s > start:
                pieces.append((start, s - 2))
                start = s
        pieces.append((start, len(self.text)))
        parts = []
        at_once = max(1, min(8, os.cpu_count() or 1))  # pieces tokenised in parallel; each one's offset list is ~0.5 GB of Python objects
        for i in range(0, len(pieces), at_once):
            group = pieces[i : i + at_once]
            enc = tokenizer([self.text[a:b] for a, b in group], add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
            parts += [np.asarray(o, dtype=np.int64).reshape(-1, 2) + a for (a, _), o in zip(group, enc)]
        self.offsets = np.concatenate(parts)

    @property
    def n_tokens(self) -> int:
        return len(self.offsets)

    def window(self, rng: random.Random, n_tokens: int) -> tuple[str, tuple[int, int]]:
        """A window of about ``n_tokens`` tokens (all of the pool if it is shorter), wrapping around the end."""
        n = min(n_tokens, self.n_tokens)
        start = rng.randrange(self.n_tokens)
        end = start + n
        if end <= self.n_tokens:
            a, b = int(self.offsets[start, 0]), int(self.offsets[end - 1, 1])
            return self.text[a:b], (a, b)
        a = int(self.offsets[start, 0])
        b = int(self.offsets[end - self.n_tokens - 1, 1])
        return self.text[a:] + "\n\n" + self.text[:b], (a, b)

    def after(self, tokenizer, span: tuple[int, int], n_tokens: int) -> list[int]:
        """The ``n_tokens`` token ids of the pool's text right after a window (its character span), wrapping around
        the end: what the continuation objective predicts from the window's gist."""
        b, need = span[1], 16 * n_tokens  # enough text either way: tokens are rarely under one character
        text = self.text[b : b + need]   # only what is read: copying the whole pool per window cost a text-at-volume
        if len(text) < need:             # stage 1 half its speed (H100, 8.7M-token pool: 14-15k tokens/s against 29k)
            text = (text + "\n\n" + self.text[:need])[:need]
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids[:n_tokens]

    def sources(self, span: tuple[int, int]) -> set[str]:
        """The documents a window (character span, possibly wrapping) was cut from."""
        a, b = span
        ranges = [(a, b)] if a < b else [(a, len(self.text)), (0, b)]
        return {d for s, e, d in self.doc_spans for lo, hi in ranges if s < hi and e > lo}


def sentence_tokens(tokenizer, wording: str, digits: int) -> int:
    """Tokens the planted sentence takes (windows leave room for it)."""
    return len(tokenizer(" " + WORDINGS[wording][0].format(key="9" * digits) + " ", add_special_tokens=False)["input_ids"])


def passkey_row(tokenizer, template, gist_ids: list[int], text: str, seed_key: str, digits: int, wording: str, target: float | None = None,
                chunk_tokens: int = 0) -> dict:
    """A tokenised passkey example (same fields as a document row) with its key, depth and length; ``chunk_tokens``:
    the chunk-wise layout."""
    sentence, question = WORDINGS[wording]
    pk = inject_passkey(text, seed_key, digits, sentence=sentence, target=target, max_snap=0.05)
    enc = encode_prefix(tokenizer, template, pk["context"], gist_ids, chunk_tokens)
    return {
        "kind": "passkey",
        "prefix_ids": enc.prefix_ids,
        "gist_start": enc.gist_start,
        "gist_end": enc.gist_end,
        "chunks": enc.chunks,
        "question_ids": [encode_question(tokenizer, template, question)],
        "answer_ids": [encode_answer(tokenizer, template, pk["passkey"])],
        "passkey": pk["passkey"],
        "depth": pk["passkey_depth"],
        "context_tokens": enc.context_tokens,
        "wording": wording,
    }


def cue_continuation(rng: random.Random, row: dict, cue_tokens: int, continuation_tokens: int) -> tuple[list[int], list[int]] | None:
    """A (cue, continuation) pair of context token ids: from the gist cache, continue the text after the cue (None when
    the context is shorter than both)."""
    pairs = cue_spans(rng, row, cue_tokens, continuation_tokens)
    return pairs[0] if pairs else None


def cue_spans(rng: random.Random, row: dict, cue_tokens: int, continuation_tokens: int, every_tokens: int = 0) -> list[tuple[list[int], list[int]]]:
    """The reconstruction pairs of one row, (cue, continuation) token ids of its context. ``every_tokens`` 0: one pair
    from anywhere in the context. Otherwise one pair per ``every_tokens`` of context: the context is cut into
    ``max(1, len // every_tokens)`` equal parts and each part gives a pair from inside it, so every stretch of a long
    window (every chunk's gists, in the chunk-wise layout) is asked for its words at every step, not one in sixteen of
    them; the pairs never overlap. A part shorter than cue and continuation gives none."""
    ctx = [t for s, e in context_spans(row) for t in row["prefix_ids"][s:e]]  # the context alone (no head, no gists)
    need = cue_tokens + continuation_tokens
    k = max(1, len(ctx) // every_tokens) if every_tokens else 1
    pairs = []
    for i in range(k):
        lo, hi = i * len(ctx) // k, (i + 1) * len(ctx) // k
        if hi - lo < need:
            continue
        s = rng.randrange(lo, hi - need + 1)
        pairs.append((ctx[s : s + cue_tokens], ctx[s + cue_tokens : s + need]))
    return pairs


@dataclass
class PasskeyStream:
    """Deterministic micro-batches of passkey windows and training documents (see the module docstring)."""

    tokenizer: object
    template: object
    gist_ids: list[int]
    pool: TextPool
    digits: int
    seed: int
    wordings: tuple[str, ...] = ("design", "variant")
    # the chunk-wise layout: each row's chunk size drawn from these (one checkpoint for every ratio, as Activation
    # Beacon trains with random ratios); empty = N gists after the whole window
    chunk_sizes: tuple[int, ...] = ()
    room: int = field(init=False, default=0)

    def __post_init__(self):
        self.room = max(sentence_tokens(self.tokenizer, w, self.digits) for w in self.wordings)

    def rng(self, step: int, micro: int, what: str) -> random.Random:
        return random.Random(f"{self.seed}:{step}:{micro}:{what}")

    def chunk(self, step: int, micro: int, i: int) -> int:
        """Row ``i``'s chunk size (0 = the whole-document layout)."""
        return self.rng(step, micro, f"chunk{i}").choice(self.chunk_sizes) if self.chunk_sizes else 0

    def is_passkey(self, step: int, micro: int, share: float) -> bool:
        return self.rng(step, micro, "kind").random() < share

    def windows(self, step: int, micro: int, n: int, length: int, next_tokens: int = 0) -> list[dict]:
        """``n`` passkey rows whose contexts hold ``length`` tokens, give or take the sentence's tokenisation; with
        ``next_tokens``, each row also holds ``next_ids``: the tokens of the text that follows its window."""
        rng = self.rng(step, micro, "windows")
        rows = []
        for i in range(n):
            text, span = self.pool.window(rng, max(16, length - self.room))
            wording = self.wordings[rng.randrange(len(self.wordings))]
            row = passkey_row(self.tokenizer, self.template, self.gist_ids, text, f"{self.seed}:{step}:{micro}:{i}", self.digits, wording,
                              chunk_tokens=self.chunk(step, micro, i))
            if next_tokens:
                row["next_ids"] = self.pool.after(self.tokenizer, span, next_tokens)
            rows.append(row)
        return rows

    def documents(self, step: int, micro: int, n: int, doc_ids: list[str]) -> list[str]:
        rng = self.rng(step, micro, "documents")
        return [doc_ids[rng.randrange(len(doc_ids))] for _ in range(n)]


def chunk_in_turn(chunk_sizes: tuple[int, ...], i: int) -> int:
    """The ``i``-th fixed row's chunk size when a fixed set (held-out windows, validation documents) takes the chunk
    sizes in turn; 0 (the whole-document layout) without any."""
    return chunk_sizes[i % len(chunk_sizes)] if chunk_sizes else 0


def heldout_windows(tokenizer, template, gist_ids: list[int], pool: TextPool, lengths: list[int], per_length: int, digits: int, seed: int,
                    chunk_sizes: tuple[int, ...] = ()) -> dict[int, list[dict]]:
    """Fixed held-out passkey windows per length (design wording, depths spread evenly over 5-95 %); in the
    chunk-wise layout the windows take the chunk sizes in turn."""
    room = sentence_tokens(tokenizer, "design", digits)
    out = {}
    for length in lengths:
        rng = random.Random(f"heldout:{seed}:{length}")
        rows = []
        for i in range(per_length):
            text, _ = pool.window(rng, max(16, length - room))
            target = 0.05 + 0.9 * (i + 0.5) / per_length
            rows.append(passkey_row(tokenizer, template, gist_ids, text, f"heldout:{seed}:{length}:{i}", digits, "design", target,
                                    chunk_in_turn(chunk_sizes, i)))
        out[length] = rows
    return out


def effective_stages(stages: list[int], max_tokens: int) -> list[int]:
    """The configured stage lengths capped at the data's longest context (a stage at or beyond it becomes
    that length); with no stages, one stage at that length (no curriculum)."""
    below = sorted({s for s in stages if s < max_tokens})
    return below + [max_tokens] if len(below) < len(set(stages)) or not below else below


@dataclass
class Curriculum:
    """The length curriculum's state: current stage, promotions, when the last stage passed its gate.

    ``check(step, acc)`` is called every ``check_every_steps`` with the held-out passkey accuracy at the
    current stage's length; at or above ``promote_at`` it promotes to the next stage, or, in the last
    stage, records ``final_gate_step`` (from then on a warm-up-stable-decay schedule may decay).
    """

    stages: list[int]
    promote_at: float
    stage: int = 0
    final_gate_step: int | None = None
    promotions: list[dict] = field(default_factory=list)

    @property
    def length(self) -> int:
        return self.stages[self.stage]

    @property
    def done(self) -> bool:
        return self.final_gate_step is not None

    def check(self, step: int, acc: float) -> str | None:
        if acc < self.promote_at or self.done:
            return None
        if self.stage + 1 < len(self.stages):
            self.promotions.append({"step": step, "from": self.stages[self.stage], "to": self.stages[self.stage + 1], "acc": acc})
            self.stage += 1
            return "promoted"
        self.final_gate_step = step
        self.promotions.append({"step": step, "from": self.length, "to": None, "acc": acc})
        return "final gate passed"

    def state(self) -> dict:
        return {"stages": self.stages, "promote_at": self.promote_at, "stage": self.stage, "final_gate_step": self.final_gate_step, "promotions": self.promotions}

    @classmethod
    def from_state(cls, state: dict) -> "Curriculum":
        return cls(list(state["stages"]), state["promote_at"], state["stage"], state["final_gate_step"], list(state["promotions"]))
