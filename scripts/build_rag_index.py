#!/usr/bin/env python
"""Chunk every test document (model tokens), embed with sentence-transformers, store in ChromaDB."""

import logging

from gistpoc.baselines.rag import SentenceEmbedder, build_index
from gistpoc.cli import parser, required, run
from gistpoc.model import load_tokenizer
from gistpoc.utils import read_jsonl, stable_hash, write_json

log = logging.getLogger("gistpoc")


def main(args):
    records = read_jsonl(args.dataset)
    docs = list({r["doc_id"]: r for r in records}.values())
    tok = load_tokenizer(args.model_ref)
    embedder = SentenceEmbedder(args.embedding_model)
    collection = "chunks_" + stable_hash([args.embedding_model, args.chunk_tokens, [d["doc_id"] for d in docs]], 12)
    n = build_index(args.db, collection, docs, tok, embedder, args.chunk_tokens)
    write_json(args.manifest, {"collection": collection, "n_chunks": n, "n_documents": len(docs), "chunk_tokens": args.chunk_tokens, "embedding_model": args.embedding_model, "db": args.db})
    log.info("indexed %d chunks of %d documents into %s/%s", n, len(docs), args.db, collection)


if __name__ == "__main__":
    p = parser(__doc__)
    required(p, "--dataset", "--model-ref", "--embedding-model", "--db", "--manifest")
    p.add_argument("--chunk-tokens", type=int, required=True)
    run(main, p)
