"""Document building, passkeys, grounded Q&A and the dataset records, on real bundled text."""

from __future__ import annotations

import re

import pytest

from gistpoc.data import extract as E
from gistpoc.data.dataset import build_records, inject_all
from gistpoc.data.documents import assign_splits, dedupe, split_of, window_document
from gistpoc.data.passkey import PASSKEY_QUESTION, inject_passkey, sentence_boundaries
from gistpoc.model import GIST_TEMPLATE, add_gist_tokens
from gistpoc.qa.grounded import grounded_qa
from gistpoc.utils import IssueLog
from tests.conftest import RESOURCES


@pytest.fixture(scope="module")
def wiki_docs():
    return list(E.iter_mediawiki_xml(RESOURCES / "raw/wikipedia/enwiki-20250201-tiny_dump.xml.bz2", IssueLog()))


def test_dedupe_by_title_and_content(wiki_docs):
    dup_title = {**wiki_docs[0], "doc_id": "other:1", "text": wiki_docs[0]["text"][:500]}
    dup_content = {**wiki_docs[1], "doc_id": "other:2", "title": "Something else"}
    issues = IssueLog()
    kept = dedupe(wiki_docs + [dup_title, dup_content], issues)
    assert len(kept) == len(wiki_docs)
    assert sorted(issues.counts()) == ["duplicate content", "duplicate title"]
    assert wiki_docs[0]["doc_id"] in {d["doc_id"] for d in kept}   # the longer text wins


def test_window_respects_token_range(wiki_docs, tokenizer):
    issues = IssueLog()
    wins = window_document(wiki_docs[0], tokenizer, 200, 400, 3, issues)
    assert 1 <= len(wins) <= 3
    for w in wins:
        n = len(tokenizer(w["text"], add_special_tokens=False)["input_ids"])
        assert 190 <= n <= 410 and w["n_tokens"] == n     # (+-: re-tokenising a cut can merge a token)
    assert wins[0]["truncated"]
    short = {**wiki_docs[0], "text": "Too short."}
    assert window_document(short, tokenizer, 200, 400, 1, issues) == []
    assert "below minimum length" in issues.items[-1]["reason"]


def test_splits_are_deterministic_disjoint_and_mixed(wiki_docs, tokenizer):
    wikitext = list(E.iter_wikitext_raw(RESOURCES / "raw/wikitext/wikitext-2-raw-v1.wiki.test.raw.bz2", IssueLog()))[:40]
    docs = []
    for d in wiki_docs + wikitext:
        docs += window_document({**d, "source": "wikipedia" if d in wiki_docs else "techdocs"}, tokenizer, 64, 128, 2, IssueLog())
    sizes = {"train": 4, "val": 2, "test": 2}
    a = assign_splits(docs, sizes, seed=3, issues=IssueLog())
    b = assign_splits(list(reversed(docs)), sizes, seed=3, issues=IssueLog())
    assert a == b
    by_split = {s: {d["base_doc_id"] for d in a if d["split"] == s} for s in ("train", "val", "test")}
    assert [len(by_split[s]) for s in ("train", "val", "test")] == [4, 2, 2]
    assert not (by_split["train"] & by_split["test"]) and not (by_split["val"] & by_split["test"])
    assert all(split_of(b) == s for s, ids in by_split.items() for b in ids)
    assert len({d["source"] for d in a if d["split"] == "train"}) == 2   # round-robin over sources within a split
    c = assign_splits(docs, sizes, seed=4, issues=IssueLog())
    assert c != a


def test_the_split_is_a_function_of_the_document_id(wiki_docs, tokenizer):
    """The default and the paper configs (other sizes, other length bounds, other dumps) agree on every document's
    split, and adding documents moves none: a pre-trained adapter's training documents stay training documents."""
    wikitext = list(E.iter_wikitext_raw(RESOURCES / "raw/wikitext/wikitext-2-raw-v1.wiki.test.raw.bz2", IssueLog()))[:40]
    docs = []
    for d in wiki_docs + wikitext:
        docs += window_document({**d, "source": "x"}, tokenizer, 64, 128, 2, IssueLog())
    small = assign_splits(docs[: len(docs) // 2], {"train": 3, "val": 1, "test": 2}, seed=1, issues=IssueLog())
    large = assign_splits(docs, {"train": 50, "val": 50, "test": 50}, seed=1234, issues=IssueLog())
    label = {d["doc_id"]: d["split"] for d in large}
    assert all(label[d["doc_id"]] == d["split"] for d in small)
    assert {d["split"] for d in large} == {"train", "val", "test"}
    shares = {s: sum(split_of(f"id{i}") == s for i in range(4000)) / 4000 for s in ("train", "val", "test")}
    assert abs(shares["train"] - 0.6) < 0.03 and abs(shares["test"] - 0.2) < 0.03


def test_passkey_injection(wiki_docs):
    text = wiki_docs[4]["text"]
    info = inject_passkey(text, "seed:doc")
    key = info["passkey"]
    assert re.fullmatch(r"[1-9]\d{4}", key) and key not in text
    assert info["context"].count(key) == 1
    start = info["passkey_char_start"]
    assert info["context"][start:].startswith(f"The passkey is {key}.")
    assert start in sentence_boundaries(info["context"][:start] + "X" + info["context"][info["passkey_char_end"]:]) or info["context"][start - 1] in " \n"
    assert abs(info["passkey_depth"] - start / len(info["context"])) < 1e-3
    assert inject_passkey(text, "seed:doc") == info and inject_passkey(text, "seed:other")["passkey"] != key


def test_grounded_qa_evidence_points_at_the_text(wiki_docs):
    for doc in wiki_docs:
        qas = grounded_qa(doc)
        assert {q["qtype"] for q in qas} <= {"factual", "global", "reasoning"}
        for q in qas:
            for s, e in q["evidence"]:
                assert 0 <= s < e <= len(doc["text"])
            if q["qtype"] == "factual":
                s, e = q["evidence"][0]
                assert doc["text"][s:e].strip() == q["answer"].strip()
    albedo = next(d for d in wiki_docs if d["title"] == "Albedo")
    glob = next(q for q in grounded_qa(albedo) if q["qtype"] == "global")
    assert glob["answer"].startswith("Albedo")   # the article lead


def test_a_paragraph_on_the_line_under_its_heading_is_a_paragraph():
    """An arXiv document is "# Title", a blank line, then "## Abstract" with the abstract on the next line: the
    abstract is the global reference and the factual question comes from it (it was skipped with its heading, and
    two of three such documents had no factual or global question)."""
    abstract = ("We study the polymer representation of quantum mechanics. The paper has two parts. In the first one, we "
                "derive the polymer description from the ordinary Schroedinger theory and show that it arises as an "
                "appropriate limit of that theory. In the second part we consider the continuum limit of this theory.")
    text = f"# Polymer Quantum Mechanics\n\n## Abstract\n{abstract}"
    qas = {q["qtype"]: q for q in grounded_qa({"text": text})}
    assert qas["global"]["answer"].startswith("We study the polymer representation")
    assert "Abstract" not in qas["global"]["answer"] and "#" not in qas["factual"]["answer"]
    s, e = qas["factual"]["evidence"][0]
    assert text[s:e] == qas["factual"]["answer"] and s > text.index(abstract)
    assert not [q for q in grounded_qa({"text": "# Title\n\n## Abstract"})]


def test_dataset_records_have_exact_gist_indices(wiki_docs, tokenizer):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer.name_or_path)
    add_gist_tokens(tok, 10)
    docs = [{**w, "split": "test"} for d in wiki_docs[:2] for w in window_document(d, tok, 100, 200, 1, IssueLog())]
    qa = {d["doc_id"]: grounded_qa(d) for d in docs}
    passkeys = {p["doc_id"]: p for p in inject_all(docs, 5, 5)}
    records = build_records(docs, qa, passkeys, tok, "Compress the following text.", 10)
    assert {r["qtype"] for r in records} >= {"passkey", "global"}
    for r in records:
        assert r["gist_tokens"] == "".join(GIST_TEMPLATE.format(i) for i in range(10))
        assert r["gist_end_idx"] - r["gist_start_idx"] == 10
        ids = tok.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False)  # template exists
        assert ids
        from gistpoc.gist.template import encode_prefix, prompt_template

        enc = encode_prefix(tok, prompt_template(tok, r["instruction"]), r["context"], tok.convert_tokens_to_ids([GIST_TEMPLATE.format(i) for i in range(10)]))
        assert tok.convert_ids_to_tokens(enc.prefix_ids[r["gist_start_idx"] : r["gist_end_idx"]]) == [GIST_TEMPLATE.format(i) for i in range(10)]
        assert r["context_tokens"] == enc.context_tokens
        for s, e in r["evidence"]:
            assert 0 <= s < e <= len(r["context"])
        if r["qtype"] == "passkey":
            assert r["question"] == PASSKEY_QUESTION and r["answer"] in r["context"]
        if r["qtype"] == "factual":
            s, e = r["evidence"][0]
            assert r["context"][s:e].strip() == r["answer"].strip()   # spans shifted past the passkey
