"""Offline grounded Q&A: questions and reference answers taken from the document itself, no model.

The three question types of the design:
- factual: a definitional sentence ("X is a/the ...") -> "What is X?" / its predicate;
- global: the overall topic -> the article lead, paper abstract or page introduction;
- reasoning: the difference between two sections -> the opening sentences of both.
Each answer carries the character spans of its evidence in the document text.
"""

from __future__ import annotations

import re

GLOBAL_QUESTION = "What is the overall topic and main point of this document?"
_PRONOUNS = {"it", "this", "that", "he", "she", "they", "there", "these", "those", "we", "i", "you", "its", "his", "her", "one"}
_DEF = re.compile(
    r"(?:(?<=[.!?]\s)|(?<=\n)|^)(?P<subj>(?:The |An |A )?[A-Z][\w\-'()]*(?: [\w\-'()]+){0,5}?) (?P<verb>is|are|was|were) (?P<pred>(?:an?|the) [^.\n]{12,200}?)\.(?=\s|$)",
    re.M,
)
_SENT = re.compile(r"[^.!?\n]+(?:[.!?]|$)")


def _paragraphs(text: str) -> list[tuple[int, int]]:
    """(start, end) character spans of prose paragraphs: blank-line separated, headings excluded (a paragraph that
    starts on the line under its heading, as "## Abstract" does in arXiv documents, is kept without it)."""
    spans = []
    for m in re.finditer(r"[^\n]+(?:\n[^\n#][^\n]*)*", text):
        chunk, at = m.group(0), m.start()
        if chunk.lstrip().startswith("#"):   # a heading, and the paragraph on the lines right under it if any
            nl = chunk.find("\n")
            if nl < 0:
                continue
            chunk, at = chunk[nl + 1 :], at + nl + 1
        stripped = chunk.strip()
        if len(stripped) > 40 and re.search(r"[a-z]{3,}.*[.!?:]", stripped):
            start = at + (len(chunk) - len(chunk.lstrip()))
            spans.append((start, start + len(stripped)))
    return spans


def first_sentences(text: str, span: tuple[int, int], n: int, max_chars: int = 400) -> tuple[str, list[int]]:
    s0, s1 = span
    sentences = list(_SENT.finditer(text, s0, s1))
    if not sentences:
        return text[s0:s1][:max_chars], [s0, min(s1, s0 + max_chars)]
    end = sentences[0].end()
    for m in sentences[1:n]:
        if m.end() - s0 > max_chars:
            break
        end = m.end()
    return text[s0:end].strip(), [s0, end]


def _cloze_qa(text: str) -> dict | None:
    """Fallback factual question: how a sentence from the body of the document ends."""
    paras = _paragraphs(text)
    body = paras[1:] or paras
    sentences = [m for p in body for m in _SENT.finditer(text, p[0], p[1]) if 12 <= len(m.group(0).split()) <= 40 and "$" not in m.group(0)]
    if not sentences:
        return None
    m = sentences[len(sentences) // 2]
    words = m.group(0).strip().rstrip(".!?").split()
    cut = len(words) - min(6, max(3, len(words) // 4))
    stem, tail = " ".join(words[:cut]), " ".join(words[cut:])
    start = m.start() + m.group(0).rfind(tail)
    return {
        "qtype": "factual",
        "question": f'According to the document, how does this statement end: "{stem} ..."?',
        "answer": tail,
        "evidence": [[start, start + len(tail)]],
    }


def factual_qa(text: str) -> dict | None:
    matches = [m for m in _DEF.finditer(text) if m.group("subj").split()[0].lower() not in _PRONOUNS]
    if not matches:
        return _cloze_qa(text)
    lead_end = _paragraphs(text)[0][1] if _paragraphs(text) else 0
    later = [m for m in matches if m.start() >= lead_end]
    m = (later or matches)[0]
    subj = m.group("subj").strip()
    subj_q = subj[0].lower() + subj[1:] if subj.split()[0] in {"The", "An", "A"} else subj
    return {
        "qtype": "factual",
        "question": f"According to the document, what {m.group('verb')} {subj_q}?",
        "answer": m.group("pred").strip(),
        "evidence": [[m.start("pred"), m.end("pred")]],
    }


def global_qa(text: str) -> dict | None:
    paras = _paragraphs(text)
    if not paras:
        return None
    abstract = re.search(r"^## Abstract\n", text, re.M)
    span = next((p for p in paras if abstract and p[0] >= abstract.end()), paras[0])
    answer, ev = first_sentences(text, span, 2)
    return {"qtype": "global", "question": GLOBAL_QUESTION, "answer": answer, "evidence": [ev]}


def two_parts(text: str) -> tuple[str, tuple[int, int], str, tuple[int, int]] | None:
    """Two distant parts of a document, (label_a, paragraph_a, label_b, paragraph_b): the first and last sections'
    opening paragraphs (labels: their headings, the abstract skipped), else its first and last paragraphs (labels
    ""); None when it has fewer than two."""
    heads = [(m.group(1).strip(), m.end()) for m in re.finditer(r"^#{2,4} (.+)$", text, re.M)]
    paras = _paragraphs(text)
    picks = []
    for title, pos in heads:
        para = next((p for p in paras if p[0] >= pos), None)
        if para and title.lower() != "abstract" and all(para != q[1] for q in picks):
            picks.append((title, para))
    if len(picks) >= 2:
        return (*picks[0], *picks[-1])
    if len(paras) >= 2:
        return ("", paras[0], "", paras[-1])
    return None


def reasoning_qa(text: str) -> dict | None:
    parts = two_parts(text)
    if parts is None:
        return None
    a, pa, b, pb = parts
    if a:
        question = f"What is the difference between the part about \"{a}\" and the part about \"{b}\", and why does it matter?"
    else:
        question = "What is the difference between how the document begins and how it ends, and why does it matter?"
    sa, ea = first_sentences(text, pa, 1, 240)
    sb, eb = first_sentences(text, pb, 1, 240)
    return {"qtype": "reasoning", "question": question, "answer": f"{sa} In contrast, {sb}", "evidence": [ea, eb]}


def grounded_qa(doc: dict) -> list[dict]:
    """All grounded questions for one document (a type is skipped when the text offers no basis)."""
    text = doc["text"]
    return [qa for qa in (factual_qa(text), global_qa(text), reasoning_qa(text)) if qa is not None]
