"""Questions an LLM writes about a document, each checked before it is kept (``qa.backend: openai``).

Per document, one request per question type, each answered as JSON and validated:
- factual: a question whose answer is a short span copied from the document, with the sentence it comes from; the
  answer must occur in that sentence and the sentence in the document (its character offsets are the evidence);
- global: a question about the document's main theme and a reference answer the model writes from the whole document
  (not its lead paragraph);
- reasoning: two passages the pipeline takes from distant parts of the document (``grounded.two_parts``: the first
  and last sections' openings, at least ``min_part_distance`` of its length apart; their offsets are the evidence),
  and a question the model writes that needs both, with its answer. (Asked to find two distant passages itself, the
  1.5B writer of the first GPU run quoted neighbouring sentences every time: ``bench/writer_reasoning_probe.py``.)

Two filters follow, each a request of its own and each counted:
- closed-book leakage: the model answers the question without the document; a question it answers correctly
  (factual: token F1 >= ``leak_f1`` with the reference; global / reasoning: the judge's rubric says the closed-book
  answer states the reference's point) is dropped, since it does not test the document;
- support: the model reads the document and the reference; a reference it does not find supported is dropped.

Every request goes through ``CachedChatClient`` (on-disk cache keyed by the full request: endpoint, model, prompt), so a
rerun or an interrupted run pays for nothing twice. The counts of what was generated and dropped, by reason and
question type, come back with the questions for the data report.
"""

from __future__ import annotations

import re

from gistpoc.evaluate.metrics import token_f1
from gistpoc.qa.grounded import first_sentences, two_parts
from gistpoc.qa.openai_backend import CachedChatClient, ResponseValidationError, thread_map

QTYPES = ("factual", "global", "reasoning")

WRITE = {
    "factual": (
        "You write one evaluation question about the document below. The answer must be a short phrase (1-8 words) "
        "copied exactly from the document, and answering must need the document (not general knowledge). Reply with "
        'JSON only: {"question": str, "answer": str, "evidence": str}, where evidence is the one sentence of the '
        "document, copied exactly, that contains the answer."
    ),
    "global": (
        "You write one evaluation question about the main theme of the whole document below: what it is about as a "
        "whole, its overall argument or purpose, not a detail from one part. Write the reference answer yourself from "
        "the whole document, in 2-3 sentences. Reply with JSON only: "
        '{"question": str, "answer": str}.'
    ),
    "reasoning": (
        "You write one evaluation question that can only be answered by combining the two passages below, which come "
        "from two distant parts of one document (A early, B late): e.g. how something in A relates to, changes or "
        "explains something in B. Write its answer (1-3 sentences) from both passages. Reply with JSON only: "
        '{"question": str, "answer": str}.'
    ),
}
CLOSED_BOOK = "Answer the question in one or two sentences. If you do not know, say so."
GRADE = (
    "You compare a candidate answer with a reference answer to the same question. Reply with JSON only: "
    '{"verdict": "yes" or "no", "reason": "<one sentence>"}: yes when the candidate states the reference\'s main '
    "point without contradicting it."
)
SUPPORT = (
    "You check a reference answer against a document. Reply with JSON only: "
    '{"supported": "yes" or "no", "reason": "<one sentence>"}: yes when everything the reference answer states is '
    "stated or directly implied by the document."
)


def _text(obj: dict, key: str) -> str:
    v = obj.get(key)
    if not isinstance(v, str) or not v.strip():
        raise ResponseValidationError(f"{key} must be a non-empty string")
    return v.strip()


def _validator(qtype: str):
    keys = {"factual": ("question", "answer", "evidence"), "global": ("question", "answer"),
            "reasoning": ("question", "answer")}[qtype]
    return lambda obj: {k: _text(obj, k) for k in keys}


def _yes_no(key: str):
    def validate(obj: dict) -> dict:
        v = str(obj.get(key, "")).strip().lower()
        if v not in ("yes", "no"):
            raise ResponseValidationError(f"{key} must be yes or no, got {obj.get(key)!r}")
        return {key: v, "reason": str(obj.get("reason", ""))[:300]}

    return validate


def _squeezed(text: str) -> tuple[str, list[int]]:
    """``text`` without whitespace and straight/curly quotes, and each kept character's offset in ``text``."""
    idx = [j for j, ch in enumerate(text) if not ch.isspace() and ch not in QUOTES]
    return "".join(text[j] for j in idx), idx


QUOTES = "\"'\u201c\u201d\u2018\u2019`"
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def sentence_bounds(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence of ``text`` (split after . ! ? and whitespace)."""
    bounds, pos = [], 0
    for part in SENTENCE_END.split(text):
        start = text.find(part, pos)
        bounds.append((start, start + len(part)))
        pos = start + len(part)
    return bounds


def find_span(text: str, quote: str, fuzzy: float = 0.0) -> list[int] | None:
    """[start, end] of ``quote`` in ``text``, else None. Exact first; then ignoring whitespace and quote marks (models
    re-flow spacing, e.g. WikiText's "word , word" copied as "word, word"); then, with ``fuzzy`` > 0, the document's
    sentence (or two adjacent ones) whose token F1 with the quote is highest, when it is at least ``fuzzy``."""
    quote = quote.strip().strip(QUOTES).strip()
    if not quote:
        return None
    i = text.find(quote)
    if i >= 0:
        return [i, i + len(quote)]
    flat, idx = _squeezed(text)
    q, _ = _squeezed(quote)
    i = flat.find(q) if q else -1
    if i >= 0:
        return [idx[i], idx[i + len(q) - 1] + 1]
    if fuzzy <= 0:
        return None
    bounds = sentence_bounds(text)
    candidates = bounds + [(a[0], b[1]) for a, b in zip(bounds, bounds[1:])]
    best = max(candidates, key=lambda ab: token_f1(text[ab[0]:ab[1]], quote), default=None)
    if best is not None and token_f1(text[best[0]:best[1]], quote) >= fuzzy:
        return list(best)
    return None


def reasoning_passages(doc_text: str, min_part_distance: float, max_chars: int = 600) -> tuple[str, str, list[list[int]]] | None:
    """The two passages a reasoning question is written from (``grounded.two_parts``, up to three sentences of each)
    and their spans; None when the document has no two parts at least ``min_part_distance`` of its length apart."""
    parts = two_parts(doc_text)
    if parts is None or parts[3][0] - parts[1][0] < min_part_distance * len(doc_text):
        return None
    (a, ea), (b, eb) = first_sentences(doc_text, parts[1], 3, max_chars), first_sentences(doc_text, parts[3], 3, max_chars)
    return a, b, [ea, eb]


def check_evidence(doc_text: str, qtype: str, item: dict, evidence_f1: float = 0.8) -> tuple[list[list[int]] | None, str]:
    """The evidence spans of a written factual or global question, or (None, why it fails the check). A quoted passage
    is found in the document exactly, or re-spaced, or as the sentence(s) it matches with token F1 >= ``evidence_f1``;
    a factual answer must then be a span (up to spacing) of that document sentence. (Reasoning evidence is the two
    passages the question was written from: ``reasoning_passages``.)"""
    if qtype == "factual":
        span = find_span(doc_text, item["evidence"], evidence_f1)
        if span is not None and find_span(doc_text[span[0]:span[1]], item["answer"]) is not None:
            return [span], ""
        # the quote is off (a paraphrase, or the wrong sentence) but the answer may still be a span of the document:
        # then the evidence is the document sentence holding it that is closest to the quote
        holding = [b for b in sentence_bounds(doc_text) if find_span(doc_text[b[0]:b[1]], item["answer"]) is not None]
        if not holding:
            return None, ("answer is not a span of its evidence sentence" if span is not None
                          else "evidence sentence not found in the document")
        return [list(max(holding, key=lambda b: token_f1(doc_text[b[0]:b[1]], item["evidence"])))], ""
    return [], ""


def leaked(client: CachedChatClient, qtype: str, question: str, reference: str, leak_f1: float) -> tuple[bool, str]:
    """Does the model answer correctly without the document? (closed-book answer, then graded)."""
    body = client.request([{"role": "system", "content": CLOSED_BOOK}, {"role": "user", "content": question}], json_mode=False)
    answer = client.complete(body).strip()
    if qtype == "factual":
        f1 = token_f1(answer, reference)
        return f1 >= leak_f1, answer
    grade = client.complete_json(client.request([
        {"role": "system", "content": GRADE},
        {"role": "user", "content": f"Question: {question}\nReference answer: {reference}\nCandidate answer: {answer or '(no answer)'}"},
    ]), _yes_no("verdict"))
    return grade["verdict"] == "yes", answer


def supported(client: CachedChatClient, doc_text: str, question: str, reference: str) -> bool:
    out = client.complete_json(client.request([
        {"role": "system", "content": SUPPORT},
        {"role": "user", "content": f"Document:\n{doc_text}\n\nQuestion: {question}\nReference answer: {reference}"},
    ]), _yes_no("supported"))
    return out["supported"] == "yes"


def new_counts() -> dict:
    return {q: {"no_distant_parts": 0, "written": 0, "invalid_reply": 0, "failed_evidence_check": 0, "closed_book_leak": 0, "unsupported": 0,
                "kept": 0} for q in QTYPES}


def llm_questions(doc: dict, client: CachedChatClient, max_doc_chars: int = 60000, min_part_distance: float = 0.25,
                  leak_f1: float = 0.5, counts: dict | None = None, qtypes: tuple[str, ...] = QTYPES) -> list[dict]:
    """The kept questions of one document (``qtype``, ``question``, ``answer``, ``evidence`` spans, and the
    closed-book answer the leakage filter saw); ``counts`` (``new_counts()``) is updated with what was dropped and why.
    The three types' request chains (write, then the checks) run side by side when the client allows several requests
    in flight (``qa.openai.concurrency``); each touches only its own type's counts, and the output keeps QTYPES order.
    ``qtypes`` (``qa.openai.qtypes``): the types asked for; the others are neither requested nor counted."""
    counts = counts if counts is not None else new_counts()
    text = doc["text"][:max_doc_chars]

    def one(qtype: str) -> dict | None:
        c = counts[qtype]
        content = f"Document title: {doc['title']}\n\n{text}"
        if qtype == "reasoning":
            picked = reasoning_passages(text, min_part_distance)
            if picked is None:   # no two distant parts to join: nothing is asked
                c["no_distant_parts"] += 1
                return None
            content = f"Document title: {doc['title']}\n\nPassage A:\n{picked[0]}\n\nPassage B:\n{picked[1]}"
        body = client.request([{"role": "system", "content": WRITE[qtype]}, {"role": "user", "content": content}])
        try:
            item = client.complete_json(body, _validator(qtype))
        except ResponseValidationError:
            c["invalid_reply"] += 1
            return None
        c["written"] += 1
        evidence, why = (picked[2], "") if qtype == "reasoning" else check_evidence(text, qtype, item)
        if evidence is None:
            c["failed_evidence_check"] += 1
            return None
        try:
            leak, closed_answer = leaked(client, qtype, item["question"], item["answer"], leak_f1)
            if leak:
                c["closed_book_leak"] += 1
                return None
            if not supported(client, text, item["question"], item["answer"]):
                c["unsupported"] += 1
                return None
        except ResponseValidationError:
            c["invalid_reply"] += 1
            return None
        c["kept"] += 1
        return {"qtype": qtype, "question": item["question"], "answer": item["answer"], "evidence": evidence,
                "closed_book_answer": closed_answer}

    asked = [q for q in QTYPES if q in qtypes]
    workers = min(len(asked), int(client.cfg.get("concurrency", 1)))
    return [q for q in thread_map(one, asked, workers) if q is not None]
