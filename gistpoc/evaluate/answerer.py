"""One answering interface for the evaluation runner (``eval.engine``): the eager Hugging Face loop and the compiled
engine (``gistpoc.engine``) both answer ``generate(prompts, start_positions, max_new_tokens, prefix)`` and return one
``Generation`` per prompt, so the runner never asks which engine it has.

- ``prompts``: token ids per row; ``start_positions``: where each row's positions start (0 for a plain prompt, a cache's
  ``next_position`` after a gist or budget cache), one for all rows or one per row;
- ``prefix``: ``None`` (plain prompts), one ``GistCache`` every row continues, or one cache per row;
- ``per_pass(longest)``: how many rows one call may take when the longest prompt has ``longest`` tokens (the eager
  loop: 1; the compiled engine: its batch while a prompt fits a captured pass, else 1);
- ``facts``: what every answer row records about the engine (``engine``; ``fast_kernels`` for the compiled one).
"""

from __future__ import annotations

import logging

from gistpoc.gist.cache import GistCache, answer_from_cache, greedy_generate

log = logging.getLogger("gistpoc")

ENGINES = ("eager", "compiled")


def _per_row(value, n: int) -> list:
    return list(value) if isinstance(value, list) else [value] * n


class EagerAnswerer:
    """The Hugging Face loop, one row at a time (``gistpoc.gist.cache``)."""

    def __init__(self, loaded):
        self.loaded = loaded
        self.facts = {"engine": "eager"}

    def per_pass(self, longest: int = 0) -> int:
        return 1

    def generate(self, prompts: list[list[int]], start_positions: int | list[int], max_new_tokens: int,
                 prefix: GistCache | list[GistCache] | None = None) -> list:
        model, eos = self.loaded.model, self.loaded.eos_ids
        starts, caches = _per_row(start_positions, len(prompts)), _per_row(prefix, len(prompts))
        out = []
        for ids, start, cache in zip(prompts, starts, caches, strict=True):
            if cache is None:
                out.append(greedy_generate(model, ids, start, eos, max_new_tokens))
            else:
                if start != cache.next_position:
                    raise ValueError(f"a row continuing a cache starts at its next position ({cache.next_position}), not {start}")
                out.append(answer_from_cache(model, cache, ids, eos, max_new_tokens))
        return out


class CompiledAnswerer:
    """``gistpoc.engine.AnswerEngine``: static cache, rows of a call in one batch, CUDA graphs on GPU."""

    def __init__(self, loaded, max_batch: int):
        from gistpoc.engine import AnswerEngine

        self.loaded, self.max_batch = loaded, max_batch
        self.engine = AnswerEngine(loaded.model, max_batch=max_batch)
        self.facts = {"engine": "compiled", "fast_kernels": self.engine.short is not None}
        log.info("compiled engine: up to %d questions per pass, CUDA graphs %s, fused Triton kernels %s", max_batch,
                 "on" if self.engine.graphs else "off", "on" if self.facts["fast_kernels"] else "off")

    def per_pass(self, longest: int = 0) -> int:
        return self.max_batch if longest <= self.engine.graph_max_tokens else 1

    def generate(self, prompts: list[list[int]], start_positions: int | list[int], max_new_tokens: int,
                 prefix: GistCache | list[GistCache] | None = None) -> list:
        return self.engine.generate(prompts, start_positions, self.loaded.eos_ids, max_new_tokens, prefix=prefix)


def make_answerer(engine: str, loaded, engine_batch: int = 16):
    """The answerer ``eval.engine`` names."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    return CompiledAnswerer(loaded, engine_batch) if engine == "compiled" else EagerAnswerer(loaded)
