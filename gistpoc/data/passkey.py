"""Passkey injection: a seeded random number planted at a recorded depth on a sentence boundary."""

from __future__ import annotations

import random
import re

PASSKEY_QUESTION = "What is the passkey hidden in the document?"
PASSKEY_SENTENCE = "The passkey is {key}. Remember it."
# (sentence, question) pairs the training stream draws from: the design's wording (what the test set uses)
# and a variant, so the gist learns "a number stated as a key", not one fixed sentence.
WORDINGS = {
    "design": (PASSKEY_SENTENCE, PASSKEY_QUESTION),
    "variant": ("The pass key is {key}. Remember it. {key} is the pass key.",
                "What is the pass key hidden in the text? Answer with the number only."),
}


def sentence_boundaries(text: str) -> list[int]:
    """Character offsets where a new sentence or paragraph starts (never inside a word)."""
    points = [m.end() for m in re.finditer(r"(?<=[.!?])\s+(?=[A-Z\"'(#])|\n\s*\n", text)]
    return sorted(set(p for p in points if 0 < p < len(text)))


def make_passkey(rng: random.Random, text: str, digits: int = 5) -> str:
    """A ``digits``-long number (no leading zero) that occurs nowhere in ``text``."""
    for _ in range(1000):
        key = str(rng.randint(10 ** (digits - 1), 10**digits - 1))
        if key not in text:
            return key
    raise RuntimeError("could not draw a passkey absent from the document")


def inject_passkey(text: str, seed_key: str, digits: int = 5, sentence: str = PASSKEY_SENTENCE, target: float | None = None,
                   max_snap: float | None = None) -> dict:
    """Insert the passkey sentence at a seeded target depth, snapped to the nearest sentence boundary.

    ``sentence`` is a wording with ``{key}`` (``WORDINGS``); ``target`` (0..1 of the characters) overrides
    the seeded depth; ``max_snap`` (a fraction) falls back to the nearest word boundary when no sentence
    boundary lies that close to the target (training windows). Returns ``{context, passkey, passkey_depth (actual, 0..1 of characters), passkey_target_depth,
    passkey_char_start, passkey_char_end}``; the key occurs in ``context`` only inside that sentence.
    """
    rng = random.Random(seed_key)
    key = make_passkey(rng, text, digits)
    drawn = rng.uniform(0.05, 0.95)
    target = drawn if target is None else target
    bounds = sentence_boundaries(text) or [len(text)]
    pos = min(bounds, key=lambda b: (abs(b / len(text) - target), b))
    if max_snap is not None and abs(pos / len(text) - target) > max_snap:
        # short windows have few sentence boundaries: take the nearest word boundary instead
        words = [m.end() for m in re.finditer(r"\s+", text)] or [len(text)]
        pos = min(words, key=lambda b: (abs(b / len(text) - target), b))
    sentence = sentence.format(key=key)
    before, after = text[:pos], text[pos:]
    glue_l = "" if before.endswith((" ", "\n")) else " "
    glue_r = "\n\n" if before.endswith("\n") and not after.startswith("\n") else ("" if after.startswith((" ", "\n")) else " ")
    context = before + glue_l + sentence + glue_r + after
    start = len(before) + len(glue_l)
    assert context.count(key) == sentence.count(key)  # only inside the planted sentence
    return {
        "context": context,
        "passkey": key,
        "passkey_depth": round(start / max(1, len(context)), 4),
        "passkey_target_depth": round(target, 4),
        "passkey_char_start": start,
        "passkey_char_end": start + len(sentence),
    }


def shift_span(span: list[int], insert_at: int, length: int) -> list[int]:
    """Move a [start, end) character span after an insertion of ``length`` chars at ``insert_at``."""
    s, e = span
    if s >= insert_at:
        return [s + length, e + length]
    if e > insert_at:
        return [s, e + length]
    return [s, e]
