"""Answer every test question with one method and measure what each answer costs.

Methods share the prompt layout (``gist.template``), greedy decoding and answer length:
- closed_book: the question alone;  full_context: the whole document;
- rag: the top-k chunks of the document (retrieval time counted in TTFT);
- gist{N}: the saved gist KV cache of the document (compression timed separately, once per document).
Scoring is a separate step (``gistpoc.evaluate.scoring``, the score_answers rule).
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections import OrderedDict
from pathlib import Path

import torch

from gistpoc.gist.cache import GistCache, answer_from_cache, compress_context, greedy_generate
from gistpoc.gist.template import encode_prefix, encode_question, prompt_template
from gistpoc.utils import is_oom

log = logging.getLogger(__name__)


class MemoryMeter:
    """Peak GPU memory per item (reset before each), or the process RSS on CPU."""

    def __init__(self, device: torch.device):
        self.device = device

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak_bytes(self) -> int:
        if self.device.type == "cuda":
            return int(torch.cuda.max_memory_allocated(self.device))
        import psutil

        return int(psutil.Process().memory_info().rss)

    @property
    def kind(self) -> str:
        return "cuda_max_allocated" if self.device.type == "cuda" else "cpu_rss"


def scramble_context(tokenizer, text: str, key: str) -> str:
    """The document with its tokens in a random order (seeded by ``key``, e.g. the document id): the same tokens,
    none of the content. A gist made from it must not answer the document's questions (the leakage control)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    gen = torch.Generator().manual_seed(int(hashlib.sha256(f"gistpoc-scramble:{key}".encode()).hexdigest()[:15], 16))
    perm = torch.randperm(len(ids), generator=gen).tolist()
    return tokenizer.decode([ids[i] for i in perm])


def _docs(records: list[dict]) -> "OrderedDict[str, list[dict]]":
    docs: OrderedDict[str, list[dict]] = OrderedDict()
    for r in records:
        docs.setdefault(r["doc_id"], []).append(r)
    return docs


def run_method(method: str, loaded, records: list[dict], instruction: str, max_new_tokens: int, warmup_items: int = 1,
               retriever=None, top_k: int = 3, cache_dir: Path | None = None, scramble: bool = False,
               engine: str = "eager", engine_batch: int = 16) -> list[dict]:
    """Predictions with timings for every record (unscored: ``gistpoc.evaluate.scoring`` scores them in a CPU rule,
    so a metric change never reruns generation); an out-of-memory item is recorded as ``oom``.

    ``scramble`` (gist methods): compress each document with its tokens shuffled (``scramble_context``) and answer
    its questions from that gist: the context-scrambling control.
    ``engine``: ``eager`` (the Hugging Face loop, one question at a time) or ``compiled`` (``gistpoc.engine``: static
    cache, CUDA graphs on GPU; a gist method answers up to ``engine_batch`` questions of a document in one pass on
    its one cache, each row's ``batch`` says how many; the baselines answer one prompt per pass)."""
    if engine not in ("eager", "compiled"):
        raise ValueError(f"engine must be eager or compiled, got {engine!r}")
    model, tok = loaded.model, loaded.tokenizer
    template = prompt_template(tok, instruction)
    meter = MemoryMeter(loaded.device)
    n_gist = int(method.removeprefix("gist")) if method.startswith("gist") else 0
    out: list[dict] = []

    def prompt_for(rec: dict) -> tuple[list[int], dict]:
        """Prompt ids (no gist) for the baselines, plus method-specific facts."""
        extra: dict = {}
        if method == "closed_book":
            context = ""
        elif method == "full_context":
            context = rec["context"]
        else:  # rag
            t0 = time.perf_counter()
            hits = retriever.retrieve(rec["question"], rec["doc_id"], top_k)
            extra["retrieval_ms"] = (time.perf_counter() - t0) * 1000
            extra["retrieved"] = [[h["char_start"], h["char_end"]] for h in hits]
            context = "\n\n".join(h["text"] for h in hits)
        enc = encode_prefix(tok, template, context, [])
        extra["context_tokens_in_prompt"] = enc.context_tokens
        return enc.prefix_ids + encode_question(tok, template, rec["question"]), extra

    eng = None
    if engine == "compiled":
        from gistpoc.engine import AnswerEngine

        eng = AnswerEngine(model, max_batch=engine_batch if n_gist else 1)
    batch_size = engine_batch if eng is not None and n_gist else 1

    def answer_gist(cache, questions: list[list[int]], budget: int):
        if eng is not None:
            return eng.answer_from_cache(cache, questions, loaded.eos_ids, budget)
        return [answer_from_cache(model, cache, questions[0], loaded.eos_ids, budget)]

    def answer_prompt(ids: list[int], budget: int):
        if eng is not None:
            return eng.generate([ids], 0, loaded.eos_ids, budget)[0]
        return greedy_generate(model, ids, 0, loaded.eos_ids, budget)

    # warm-up: kernels, allocator, tokenizer caches (untimed)
    for rec in records[:warmup_items]:
        if n_gist:
            enc = encode_prefix(tok, template, rec["context"], loaded.gist_ids)
            c = compress_context(model, enc.prefix_ids, enc.gist_start, enc.gist_end)
            answer_gist(c, [encode_question(tok, template, rec["question"])], 2)
        else:
            ids, _ = prompt_for(rec)
            answer_prompt(ids, 2)

    for doc_id, recs in _docs(records).items():
        cache = None
        compress_ms = None
        if n_gist:
            context = scramble_context(tok, recs[0]["context"], doc_id) if scramble else recs[0]["context"]
            enc = encode_prefix(tok, template, context, loaded.gist_ids)
            try:
                t0 = time.perf_counter()
                cache = compress_context(model, enc.prefix_ids, enc.gist_start, enc.gist_end, enc.context_tokens)
                if loaded.device.type == "cuda":
                    torch.cuda.synchronize()
                compress_ms = (time.perf_counter() - t0) * 1000
                if cache_dir is not None:  # answer from the saved cache, as a deployment would
                    path = Path(cache_dir) / f"{doc_id.replace('/', '_').replace(':', '_')}.safetensors"
                    cache.save(path)
                    cache = GistCache.load(path, loaded.device)
            except Exception as err:  # noqa: BLE001
                if not is_oom(err):
                    raise
                cache = None
                log.warning("%s: out of memory while compressing %s", method, doc_id)
        for first in range(0, len(recs), batch_size):
            group = recs[first : first + batch_size]
            rows = []
            for rec in group:
                row = {k: rec[k] for k in ("id", "doc_id", "source", "qtype", "question", "answer", "context_tokens", "passkey_depth")}
                row.update({"method": method, "reference": rec["answer"], "status": "ok", "scrambled": scramble, "engine": engine, "batch": len(group)})
                rows.append(row)
            meter.reset()
            try:
                if n_gist:
                    if cache is None:
                        raise torch.cuda.OutOfMemoryError("compression ran out of memory")
                    questions = [encode_question(tok, template, rec["question"]) for rec in group]
                    gens = answer_gist(cache, questions, max_new_tokens)
                    for row, rec, q_ids in zip(rows, group, questions):
                        row.update({"compress_ms": compress_ms, "gist_kv_bytes": cache.nbytes, "compression_ratio": rec["context_tokens"] / n_gist, "prompt_tokens": len(q_ids)})
                else:
                    ids, extra = prompt_for(group[0])
                    gens = [answer_prompt(ids, max_new_tokens)]
                    rows[0].update(extra)
                    rows[0]["prompt_tokens"] = len(ids)
                peak = meter.peak_bytes()
                for row, gen in zip(rows, gens):
                    row.update({
                        "prediction": tok.decode(gen.token_ids, skip_special_tokens=True).strip(),
                        "n_new_tokens": len(gen.token_ids),
                        "ttft_ms": gen.ttft_s * 1000 + row.get("retrieval_ms", 0.0),
                        "decode_tokens_per_s": None if math.isnan(gen.decode_tokens_per_s) else gen.decode_tokens_per_s,
                        "kv_bytes": gen.kv_bytes,
                        "peak_mem_bytes": peak,
                        "mem_kind": meter.kind,
                    })
            except Exception as err:  # noqa: BLE001
                if not is_oom(err):
                    raise
                log.warning("%s: out of memory on %s: recorded, going on", method, ", ".join(r["id"] for r in group))
                if loaded.device.type == "cuda":
                    torch.cuda.empty_cache()
                for row in rows:
                    row.update({"status": "oom", "prediction": None, "ttft_ms": None, "kv_bytes": None, "peak_mem_bytes": None, "decode_tokens_per_s": None})
            out.extend(rows)
        log.info("%s: %s done (%d answers)", method, doc_id, len(recs))
    return out
