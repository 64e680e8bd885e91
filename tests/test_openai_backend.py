"""The `openai` backend against a real OpenAI-compatible server on 127.0.0.1 (gistpoc.serve + SmolLM2).

The real `openai` client speaks HTTP to a real model; nothing is mocked. Covered: structured-output
validation, the on-disk request cache (a repeated run sends nothing), retries on 429, a missing API
key and an unreachable endpoint (clear errors, cached work kept).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from gistpoc.qa.openai_backend import CachedChatClient, EndpointError, ResponseValidationError, openai_qa, validate_qa

from .conftest import ROOT

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


def test_structured_qa_is_validated(server, tmp_path, monkeypatch, real_text):
    """A 135M model rarely writes the three-question JSON: the reply is validated, re-asked once, then
    rejected with a clear error; replies that do validate come back as the three question types."""
    monkeypatch.setenv("GISTPOC_TEST_KEY", KEY)
    client = CachedChatClient(_cfg(server), tmp_path)
    doc = {"doc_id": "wikitext:Robert_Boulter", "title": "Robert Boulter", "text": real_text[:1200]}
    try:
        qas = openai_qa(doc, client)
    except ResponseValidationError as err:
        assert "invalid structured reply after 2 attempts" in str(err)
        assert client.n_requests == 2
    else:
        assert [q["qtype"] for q in qas] == ["factual", "global", "reasoning"]
    with pytest.raises(ResponseValidationError, match="global"):
        validate_qa({"factual": {"question": "q", "answer": "a"}, "reasoning": {"question": "q", "answer": "a"}})


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


def test_generate_qa_rule_keeps_finished_documents_when_the_endpoint_dies(server, tmp_path, monkeypatch):
    """generate_qa with the openai backend: cached per document, a failure names the rerun path."""
    monkeypatch.setenv("GISTPOC_TEST_KEY", KEY)
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"doc_id": f"d{i}", "title": f"T{i}", "split": "test", "text": f"Document {i}. The sky is blue."}) + "\n" for i in range(2)))
    qa_cfg = {"backend": "openai", "openai": _cfg(server, max_tokens=24)}
    cmd = [sys.executable, "scripts/generate_qa.py", "--documents", str(docs), "--qa", json.dumps(qa_cfg), "--cache-dir", str(tmp_path / "cache"),
           "--out", str(tmp_path / "qa.jsonl"), "--issues", str(tmp_path / "issues.json")]
    subprocess.run(cmd, check=True, cwd=ROOT, env={**__import__("os").environ, "GISTPOC_TEST_KEY": KEY})
    issues = json.loads((tmp_path / "issues.json").read_text())
    n_ok = len((tmp_path / "qa.jsonl").read_text().splitlines())
    assert n_ok + 3 * sum(1 for it in issues["items"] if it["reason"].startswith("invalid generated")) == 6
    requests = list((tmp_path / "cache/openai_requests").glob("*.json"))
    assert requests
    # a rerun is served from the request cache: same output, no new requests
    before = sorted(p.name for p in (tmp_path / "cache/openai_requests").glob("*.json"))
    subprocess.run(cmd, check=True, cwd=ROOT, env={**__import__("os").environ, "GISTPOC_TEST_KEY": KEY})
    assert sorted(p.name for p in (tmp_path / "cache/openai_requests").glob("*.json")) == before
    assert len((tmp_path / "qa.jsonl").read_text().splitlines()) == n_ok


def test_judge_is_blinded_and_validated(server, tmp_path, monkeypatch):
    """LLM-as-judge through the same client: the request never names the method; replies are validated."""
    from gistpoc.evaluate.judge import judge_items, validate_verdict

    monkeypatch.setenv("GISTPOC_TEST_KEY", KEY)
    client = CachedChatClient(_cfg(server, max_tokens=32), tmp_path)
    items = [{"key": "k1", "question": "What is the document about?", "reference": "An English actor.", "prediction": "It is about an actor."},
             {"key": "k2", "question": "What is the document about?", "reference": "An English actor.", "prediction": "Cooking pasta."}]
    out = judge_items(items, client, "local-chat", seed=0)
    assert [o["key"] for o in out] == ["k1", "k2"]
    for o in out:
        assert o["verdict"] in ("yes", "no", None) and (o["score"] is None) == (o["verdict"] is None)
        if o["verdict"] is None:
            assert o["reason"].startswith("invalid judge reply")
    sent = " ".join(p.read_text() for p in tmp_path.glob("*.json"))
    import re

    for method in ("gist10", "gist25", "rag", "full_context", "closed_book"):
        assert not re.search(rf"\b{method}\b", sent)
    assert validate_verdict({"verdict": "Yes", "reason": "ok"})["verdict"] == "yes"
    with pytest.raises(ResponseValidationError):
        validate_verdict({"verdict": "maybe"})
