"""Answer every test question with one method and measure what each answer costs.

Methods share the prompt layout (``gist.template``), greedy decoding and answer length:
- closed_book: the question alone;  full_context: the whole document;
- rag: the top-k chunks of the document (retrieval time counted in TTFT);
- gist{N}: the saved gist KV cache of the document (compression timed separately, once per document);
  gist{N}per{C}: the same with N gists per C-token chunk (the chunk-wise layout).
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

from gistpoc.evaluate.answerer import make_answerer
from gistpoc.gist.cache import GistCache, compress
from gistpoc.gist.template import encode_prefix, encode_question, prompt_template
from gistpoc.methods import parse as parse_method
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


ROW_KEYS = ("id", "doc_id", "source", "qtype", "question", "answer", "context_tokens", "passkey_depth")


def _answer_group(method: str | list[str], group: list[dict], answers, meter: MemoryMeter, tok, device: torch.device, facts: dict) -> list[dict]:
    """Rows for one pass: ``answers()`` returns (generations, per-row extra facts) for ``group``; an out-of-memory
    error marks every row of the group ``oom`` and the run goes on. ``method``: one name, or one per row."""
    rows = []
    names = method if isinstance(method, list) else [method] * len(group)
    for rec, name in zip(group, names):
        row = {k: rec[k] for k in ROW_KEYS}
        row.update({"method": name, "reference": rec["answer"], "status": "ok", **facts, "batch": len(group)})
        rows.append(row)
    meter.reset()
    try:
        gens, extras = answers()
        peak = meter.peak_bytes()
        for row, gen, extra in zip(rows, gens, extras):
            row.update(extra)
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
        log.warning("%s: out of memory on %s: recorded, going on", names[0], ", ".join(r["id"] for r in group))
        if device.type == "cuda":
            torch.cuda.empty_cache()
        for row in rows:
            row.update({"status": "oom", "prediction": None, "ttft_ms": None, "kv_bytes": None, "peak_mem_bytes": None, "decode_tokens_per_s": None})
    return rows


def run_method(method: str, loaded, records: list[dict], instruction: str, max_new_tokens: int, warmup_items: int = 1,
               retriever=None, top_k: int = 3, cache_dir: Path | None = None, scramble: bool = False,
               engine: str = "eager", engine_batch: int = 16, other_document: bool = False) -> list[dict]:
    """Predictions with timings for every record (unscored: ``gistpoc.evaluate.scoring`` scores them in a CPU rule,
    so a metric change never reruns generation); an out-of-memory item is recorded as ``oom``.

    ``scramble`` (gist methods): compress each document with its tokens shuffled (``scramble_context``) and answer
    its questions from that gist: the context-scrambling control.
    ``other_document`` (gist methods): answer each document's questions from the gist of another test document (the
    next one in id order, so every document is used once as the other): the different-document control.
    ``engine``: ``eager`` (the Hugging Face loop, one question at a time) or ``compiled`` (``gistpoc.engine``: static
    cache, CUDA graphs on GPU; a gist method answers up to ``engine_batch`` questions of a document in one pass on
    its one cache; the baselines batch a document's prompts when they fit one captured pass (<= 2,048 tokens), else
    one per pass; each row's ``batch`` says how many answers shared its pass)."""
    model, tok = loaded.model, loaded.tokenizer
    template = prompt_template(tok, instruction)
    meter = MemoryMeter(loaded.device)
    kind = parse_method(method)
    rag_gist = kind.kind == "hybrid"
    n_gist = kind.n if kind.uses_gist else 0

    def encode_gist(context: str):
        return encode_prefix(tok, template, context, loaded.gist_ids, kind.chunk)
    if rag_gist and retriever is None:
        raise ValueError(f"{method} needs the RAG retriever")
    out: list[dict] = []

    def retrieve(rec: dict, k: int) -> tuple[str, dict]:
        t0 = time.perf_counter()
        hits = retriever.retrieve(rec["question"], rec["doc_id"], k)
        extra = {"retrieval_ms": (time.perf_counter() - t0) * 1000, "retrieved": [[h["char_start"], h["char_end"]] for h in hits]}
        return "\n\n".join(h["text"] for h in hits), extra

    def prompt_for(rec: dict) -> tuple[list[int], dict]:
        """Prompt ids (no gist) for the baselines, plus method-specific facts."""
        extra: dict = {}
        if method == "closed_book":
            context = ""
        elif method == "full_context":
            context = rec["context"]
        else:  # rag
            context, extra = retrieve(rec, top_k)
        enc = encode_prefix(tok, template, context, [])
        extra["context_tokens_in_prompt"] = enc.context_tokens
        return enc.prefix_ids + encode_question(tok, template, rec["question"]), extra

    answerer = make_answerer(engine, loaded, engine_batch)
    engine_facts = answerer.facts

    def answer_gist(cache, questions: list[list[int]], budget: int):
        return answerer.generate(questions, cache.next_position, budget, prefix=cache)

    def answer_prompts(prompts: list[list[int]], budget: int):
        return answerer.generate(prompts, 0, budget)

    # warm-up: kernels, allocator, tokenizer caches (untimed)
    for rec in records[:warmup_items]:
        if n_gist:
            c = compress(model, encode_gist(rec["context"]))
            answer_gist(c, [encode_question(tok, template, rec["question"])], 2)
        else:
            answer_prompts([prompt_for(rec)[0]], 2)

    docs = _docs(records)
    order = sorted(docs)
    if other_document and (not n_gist or len(order) < 2):
        raise ValueError("the different-document control needs a gist method and at least two test documents")
    for doc_id, recs in docs.items():
        cache = None
        compress_ms = None
        source_id = order[(order.index(doc_id) + 1) % len(order)] if other_document else doc_id
        facts = {"scrambled": scramble, **({"context_from": source_id} if other_document else {}), **engine_facts}
        if n_gist:
            context = docs[source_id][0]["context"]
            context = scramble_context(tok, context, doc_id) if scramble else context
            enc = encode_gist(context)
            try:
                t0 = time.perf_counter()
                cache = compress(model, enc)
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
        # a document's questions in one pass while their prompts fit one; full context puts the document in every
        # prompt, so its length is measured, and only when the answerer could batch at all (not the eager loop)
        size = answerer.per_pass()
        if size > 1 and method == "full_context":
            size = answerer.per_pass(max(len(encode_prefix(tok, template, rec["context"], []).prefix_ids) for rec in recs))
        for first in range(0, len(recs), size):
            group = recs[first : first + size]
            if n_gist:
                def gist_answers(group=group, cache=cache, compress_ms=compress_ms):
                    if cache is None:
                        raise torch.cuda.OutOfMemoryError("compression ran out of memory")
                    extras, questions = [], []
                    for rec in group:
                        extra = {"compress_ms": compress_ms, "gist_kv_bytes": cache.nbytes, "compression_ratio": rec["context_tokens"] / cache.n_tokens}
                        question = rec["question"]
                        if rag_gist:  # the top-1 chunk in full, after the gist, in the question's turn
                            chunk, found = retrieve(rec, 1)
                            extra.update(found)
                            question = f"{chunk}\n\n{question}"
                        questions.append(encode_question(tok, template, question))
                        extras.append({**extra, "prompt_tokens": len(questions[-1])})
                    return answer_gist(cache, questions, max_new_tokens), extras
                out.extend(_answer_group(method, group, gist_answers, meter, tok, loaded.device, facts))
            else:
                def prompt_answers(group=group):
                    built = [prompt_for(rec) for rec in group]
                    extras = [{**extra, "prompt_tokens": len(ids)} for ids, extra in built]
                    return answer_prompts([ids for ids, _ in built], max_new_tokens), extras
                out.extend(_answer_group(method, group, prompt_answers, meter, tok, loaded.device, facts))
        log.info("%s: %s done (%d answers)", method, doc_id, len(recs))
    return out


def run_budget(loaded, records: list[dict], instruction: str, methods: list[str], max_new_tokens: int, warmup_items: int = 1,
               engine: str = "eager", engine_batch: int = 16, window: int = 16, pool: int = 5) -> dict[str, list[dict]]:
    """The matched-budget baselines (``gistpoc.baselines.budget``: ``truncate_head25``, ``kv_select10``, ...) on the
    base model: one pass per document shared by all of them, then each method's N-position cache answers the
    document's questions like a gist cache. ``compress_ms`` = that pass + the method's selection."""
    from gistpoc.baselines.budget import budget_cache, document_pass, parse_method

    bad = [m for m in methods if parse_method(m) is None]
    if bad:
        raise ValueError(f"not budget methods: {bad}")
    parsed = [(m, *parse_method(m)) for m in methods]
    model, tok = loaded.model, loaded.tokenizer
    template = prompt_template(tok, instruction)
    meter = MemoryMeter(loaded.device)
    answerer = make_answerer(engine, loaded, engine_batch)
    batch_size = answerer.per_pass()

    def prefix(rec):
        enc = encode_prefix(tok, template, rec["context"], [])
        return enc.prefix_ids, len(enc.prefix_ids) - enc.context_tokens, len(enc.prefix_ids)

    for rec in records[:warmup_items]:
        ids, s, e = prefix(rec)
        doc = document_pass(model, ids, s, e, window)
        warm = budget_cache(parsed[0][1], parsed[0][2], doc, model, ids, pool)
        answerer.generate([encode_question(tok, template, rec["question"])], warm.next_position, 2, prefix=warm)

    out: dict[str, list[dict]] = {m: [] for m in methods}
    for doc_id, recs in _docs(records).items():
        ids, s, e = prefix(recs[0])
        doc, pass_ms = None, None
        try:
            t0 = time.perf_counter()
            doc = document_pass(model, ids, s, e, window)
            if loaded.device.type == "cuda":
                torch.cuda.synchronize()
            pass_ms = (time.perf_counter() - t0) * 1000
        except Exception as err:  # noqa: BLE001
            if not is_oom(err):
                raise
            log.warning("budget baselines: out of memory on the pass over %s", doc_id)
        caches: dict[str, tuple] = {}
        for name, kind, n in parsed:
            cache, compress_ms = None, None
            if doc is not None:
                t1 = time.perf_counter()
                cache = budget_cache(kind, n, doc, model, ids, pool)
                compress_ms = pass_ms + (time.perf_counter() - t1) * 1000
            caches[name] = (cache, compress_ms, n)
        # every (method, question) of the document, in passes of caches of one size (as many as the answerer takes)
        jobs = [(name, rec) for name, _, _ in parsed for rec in recs]
        sizes = {}
        for name, rec in jobs:
            sizes.setdefault(caches[name][2], []).append((name, rec))
        for same in sizes.values():
            for first in range(0, len(same), batch_size):
                part = same[first : first + batch_size]

                def budget_answers(part=part, caches=caches):
                    if any(caches[name][0] is None for name, _ in part):
                        raise torch.cuda.OutOfMemoryError("the document pass ran out of memory")
                    questions = [encode_question(tok, template, rec["question"]) for _, rec in part]
                    extras = [{"compress_ms": caches[name][1], "gist_kv_bytes": caches[name][0].nbytes, "budget_positions": caches[name][0].n_tokens,
                               "compression_ratio": rec["context_tokens"] / caches[name][2], "prompt_tokens": len(q)} for (name, rec), q in zip(part, questions)]
                    pcs = [caches[name][0] for name, _ in part]
                    return answerer.generate(questions, [c.next_position for c in pcs], max_new_tokens, prefix=pcs), extras

                for row in _answer_group([name for name, _ in part], [rec for _, rec in part], budget_answers, meter, tok, loaded.device,
                                         {"scrambled": False, **answerer.facts}):
                    out[row["method"]].append(row)
        del doc
        log.info("budget baselines: %s done (%d questions x %d methods)", doc_id, len(recs), len(methods))
    return out
