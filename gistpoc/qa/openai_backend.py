"""Q&A generation and judging through any OpenAI-compatible endpoint, with retries and a request cache.

The cache key is the SHA-256 of the full request (model, messages, every parameter), so an
interrupted or repeated run never pays for the same call twice. Responses must be JSON objects
that pass a validator; invalid ones are retried and then reported, never silently dropped.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable

from gistpoc.utils import dumps_canonical, sha256_text, write_text_atomic

log = logging.getLogger(__name__)

QA_SYSTEM = (
    "You write evaluation questions about a document. Reply with one JSON object only, no prose: "
    '{"factual": {"question": str, "answer": str, "evidence": str}, '
    '"global": {"question": str, "answer": str, "evidence": str}, '
    '"reasoning": {"question": str, "answer": str, "evidence": str}}. '
    "factual: a definition or fact stated in one place (\"What is the definition of X mentioned in this document?\"). "
    "global: the overall argument or theme of the whole document. "
    "reasoning: the difference between two things A and B in the document, and why it matters. "
    "evidence: a sentence copied verbatim from the document that supports the answer."
)


class EndpointError(RuntimeError):
    """The endpoint failed after every retry, or the API key is missing."""


class ResponseValidationError(ValueError):
    """The endpoint answered, but not with the JSON the caller needs."""


class CachedChatClient:
    """A thin, cached, retrying wrapper around ``openai.OpenAI().chat.completions.create``."""

    def __init__(self, cfg: dict, cache_dir: str | Path):
        self.cfg = cfg
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._client = None
        self.n_requests = 0
        self.n_cache_hits = 0

    @property
    def client(self):
        if self._client is None:
            import openai

            key = os.environ.get(self.cfg["api_key_env"])
            if not key:
                raise EndpointError(
                    f"environment variable {self.cfg['api_key_env']} (qa.openai.api_key_env) is not set: "
                    f"export it with the key for {self.cfg['base_url']}"
                )
            self._client = openai.OpenAI(
                api_key=key, base_url=self.cfg["base_url"], timeout=self.cfg.get("timeout_s", 60), max_retries=0
            )
        return self._client

    def request(self, messages: list[dict], json_mode: bool = True, model: str | None = None) -> dict:
        body = {
            "model": model or self.cfg["model"],
            "messages": messages,
            "temperature": self.cfg.get("temperature", 0.0),
            "max_tokens": self.cfg.get("max_tokens", 512),
        }
        if json_mode:
            body["response_format"] = {"type": "json_object"}
        return body

    def complete(self, body: dict) -> str:
        """Return the assistant text for ``body``; cached on disk by the full request."""
        key = sha256_text(self.cfg["base_url"] + dumps_canonical(body))
        path = self.cache_dir / f"{key}.json"
        if path.exists():
            self.n_cache_hits += 1
            return json.loads(path.read_text())["content"]
        import openai

        retries = self.cfg.get("max_retries", 5)
        for attempt in range(retries + 1):
            try:
                self.n_requests += 1
                resp = self.client.chat.completions.create(**body)
                content = resp.choices[0].message.content or ""
                write_text_atomic(path, dumps_canonical({"request": body, "content": content}))
                return content
            except (openai.RateLimitError, openai.InternalServerError, openai.APIConnectionError, openai.APITimeoutError) as err:
                if attempt == retries:
                    raise EndpointError(f"{self.cfg['base_url']}: failed after {retries + 1} attempts: {err}") from err
                delay = min(30.0, 0.5 * 2**attempt) * (1 + random.random() * 0.1)
                log.warning("endpoint error (%s), retry %d/%d in %.1fs", type(err).__name__, attempt + 1, retries, delay)
                time.sleep(delay)
            except openai.APIStatusError as err:  # 4xx other than 429: retrying will not help
                raise EndpointError(f"{self.cfg['base_url']}: HTTP {err.status_code}: {err.message}") from err
        raise AssertionError("unreachable")

    def complete_json(self, body: dict, validate: Callable[[dict], dict], attempts: int = 2) -> dict:
        """Parse and validate a JSON reply; on failure re-ask with a nudge (a new, separately cached request)."""
        last_err = None
        for i in range(attempts):
            b = body if i == 0 else {**body, "messages": body["messages"] + [{"role": "user", "content": f"Reply again: valid JSON only. Problem: {last_err}"}]}
            text = self.complete(b)
            try:
                obj = loads_lenient(_strip_fences(text))
                if not isinstance(obj, dict):
                    raise ResponseValidationError("not a JSON object")
                return validate(obj)
            except (json.JSONDecodeError, ResponseValidationError, KeyError, TypeError) as err:
                last_err = f"{type(err).__name__}: {err}"
        raise ResponseValidationError(f"invalid structured reply after {attempts} attempts: {last_err}")


def thread_map(fn: Callable, items: Iterable, workers: int = 1) -> list:
    """``[fn(x) for x in items]`` with up to ``workers`` requests in flight (``qa.openai.concurrency``): a batching
    server (gistpoc.serve, vLLM) or a hosted API answers concurrent requests together. Results keep the items'
    order; the first exception is raised once every started call has finished (their replies are cached)."""
    items = list(items)
    if workers <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, items))


_BARE_KEY = re.compile(r'([{,]\s*)([A-Za-z_][A-Za-z0-9_]*)\s*:')


def loads_lenient(text: str):
    """``json.loads``, or, when that fails, the same text with bare object keys quoted ({supported: "yes"}, a slip
    small models make) and anything after the first complete object dropped; still a JSONDecodeError otherwise."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        fixed = _BARE_KEY.sub(r'\1"\2":', text)
        try:
            obj, _ = json.JSONDecoder().raw_decode(fixed.lstrip())
            return obj
        except json.JSONDecodeError:
            raise err from None


def _strip_fences(text: str) -> str:
    text = text.strip()
    if text.startswith("```"):
        text = text.split("\n", 1)[1] if "\n" in text else ""
        text = text.rsplit("```", 1)[0]
    return text.strip()


def validate_qa(obj: dict) -> dict:
    out = {}
    for qtype in ("factual", "global", "reasoning"):
        item = obj.get(qtype)
        if not isinstance(item, dict):
            raise ResponseValidationError(f"missing object {qtype!r}")
        for field in ("question", "answer"):
            if not isinstance(item.get(field), str) or not item[field].strip():
                raise ResponseValidationError(f"{qtype}.{field} must be a non-empty string")
        out[qtype] = item
    return out
