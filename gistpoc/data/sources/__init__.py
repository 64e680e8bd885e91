"""One parser module per source kind (Wikipedia XML and WikiText, arXiv, technical docs, Hugging Face datasets)."""
