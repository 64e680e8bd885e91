"""The one prompt layout every method shares, rendered with the model's own chat template.

    [head: chat header + instruction] [context] [<GIST_0>..<GIST_{N-1}>] [q_prefix question q_suffix] [answer <eot>]

Pieces are tokenised separately and concatenated, so the token indices of the gist span
(``gist_start``, ``gist_end``) are exact and identical in the dataset, training and inference.
Baselines use the same layout with N = 0 (full context), retrieved chunks (RAG) or no context (closed book).
"""

from __future__ import annotations

from dataclasses import dataclass, field

_CTX, _GIST, _Q, _ANS = "\x1eCTX\x1e", "\x1eGIST\x1e", "\x1eQ\x1e", "\x1eANS\x1e"


@dataclass(frozen=True)
class PromptTemplate:
    head: str       # chat header + instruction + blank line, ends right before the context
    q_prefix: str   # between the gist span and the question
    q_suffix: str   # after the question: end of user turn + assistant header
    answer_end: str  # what closes an assistant turn (e.g. "<|im_end|>")


def prompt_template(tokenizer, instruction: str) -> PromptTemplate:
    """Split the chat template around the placeholders (works for SmolLM2 and Llama-3 templates)."""
    user = f"{instruction}\n\n{_CTX}{_GIST}\n\nQuestion: {_Q}"
    text = tokenizer.apply_chat_template([{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True)
    head, rest = text.split(_CTX)
    _, rest = rest.split(_GIST)
    q_prefix, q_suffix = rest.split(_Q)
    full = tokenizer.apply_chat_template(
        [{"role": "user", "content": "x"}, {"role": "assistant", "content": _ANS}], tokenize=False
    )
    after = full.split(_ANS, 1)[1]
    answer_end = after.strip() or (tokenizer.eos_token or "")
    # keep only the first special token that closes the turn (e.g. "<|im_end|>" of "<|im_end|>\n")
    for special in tokenizer.all_special_tokens:
        if answer_end.startswith(special):
            answer_end = special
            break
    return PromptTemplate(head, q_prefix, q_suffix, answer_end)


@dataclass
class EncodedPrompt:
    """Token ids of one document prompt; ``gist_start:gist_end`` is the (last) gist span (may be empty). In the
    chunk-wise layout (``gist.layout: chunked``) ``chunks`` holds (chunk_start, gist_start, gist_end) of every chunk
    (``gistpoc.gist.mask.chunked_gist_mask``); empty for N gists after the whole document."""

    prefix_ids: list[int]   # head + context + gist tokens (chunk-wise: head + chunk + gists + chunk + gists ...)
    gist_start: int
    gist_end: int
    context_tokens: int
    chunks: list[tuple[int, int, int]] = field(default_factory=list)

    @property
    def n_cached(self) -> int:
        """Gist positions a cache of this prompt holds (every chunk's N, or N)."""
        return sum(ge - gs for _, gs, ge in self.chunks) if self.chunks else self.gist_end - self.gist_start

    @property
    def ratio(self) -> float:
        """Context tokens per cached gist position (the compression ratio)."""
        return self.context_tokens / self.n_cached if self.n_cached else float("nan")


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []


def encode_prefix(tokenizer, template: PromptTemplate, context: str, gist_ids: list[int], chunk_tokens: int = 0) -> EncodedPrompt:
    """[head] [context] [gists], or with ``chunk_tokens`` the chunk-wise layout: [head] [chunk 1] [gists] [chunk 2]
    [gists] ... with a chunk of ``chunk_tokens`` context tokens (the last may be shorter)."""
    head = _ids(tokenizer, template.head)
    ctx = _ids(tokenizer, context)
    if not chunk_tokens:
        prefix = head + ctx + list(gist_ids)
        start = len(head) + len(ctx)
        return EncodedPrompt(prefix, start, start + len(gist_ids), len(ctx))
    if chunk_tokens < 1:
        raise ValueError(f"chunk tokens (gist.chunked.chunk_tokens) must be >= 1, got {chunk_tokens}")
    ids, chunks = head, []
    for i in range(0, max(len(ctx), 1), chunk_tokens):
        start = len(ids)
        ids += ctx[i : i + chunk_tokens]
        gist_start = len(ids)
        ids += list(gist_ids)
        chunks.append((start, gist_start, len(ids)))
    return EncodedPrompt(ids, chunks[-1][1], chunks[-1][2], len(ctx), chunks)


def encode_question(tokenizer, template: PromptTemplate, question: str) -> list[int]:
    """Ids after the gist span up to (and including) the assistant header."""
    return _ids(tokenizer, template.q_prefix + question + template.q_suffix)


def encode_answer(tokenizer, template: PromptTemplate, answer: str) -> list[int]:
    """Answer ids followed by the end-of-turn token (trained so the model learns to stop)."""
    return _ids(tokenizer, answer) + _ids(tokenizer, template.answer_end)
