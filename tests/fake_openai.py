"""An OpenAI-compatible chat server on loopback, for the ``llm`` backend (what vLLM, Ollama or a LiteLLM proxy serve).

It speaks ``POST /v1/chat/completions`` as pydantic-ai's OpenAI model calls it: a structured answer is a call of
the output tool the request offers (``final_result...``), a text answer is the message content; usage is reported;
a scripted ``Busy`` answers 429 with ``Retry-After``. Every request body is kept, so a test reads the conversation
the model was sent. The API key must arrive as ``Authorization: Bearer <key>``.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

from helpers import LoopbackServer, json_reply

API_KEY = "sk-test-not-a-real-key"


@dataclass(frozen=True, kw_only=True)
class Busy:
    """Answer 429 Too Many Requests once, asking to come back after ``retry_after`` seconds."""

    retry_after: int = 1


class FakeOpenAI:
    """Answers are taken in order from ``script``; the last one repeats once the script runs out."""

    def __init__(self, *, api_key: str = API_KEY) -> None:
        self.api_key = api_key
        self.script: list[Any] = []
        self.requests: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        self._lock = threading.Lock()
        self.server = LoopbackServer(self._answer)
        self.url = f"{self.server.url}/v1"

    def answer(self, *answers: Any) -> None:
        """Set what the model says next: dicts (tool-call arguments), strings (text), ``Busy`` (a 429)."""
        with self._lock:
            self.script = list(answers)

    @property
    def chats(self) -> list[dict[str, Any]]:
        """The chat requests that got a 200 answer."""
        return [r for r, s in zip(self.requests, self.statuses, strict=True) if s == 200]

    def _next(self) -> Any:
        with self._lock:
            if not self.script:
                raise AssertionError("the fake model was asked without a scripted answer")
            return self.script.pop(0) if len(self.script) > 1 else self.script[0]

    def _answer(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, dict[str, str], bytes]:
        status, extra, data = self._reply(method, path, headers, raw)
        with self._lock:
            if path.endswith("/chat/completions"):
                self.requests.append(json.loads(raw or b"{}"))
                self.statuses.append(status)
        return status, extra, data

    def _reply(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, dict[str, str], bytes]:
        if method != "POST" or path != "/v1/chat/completions":
            return json_reply({"error": {"message": f"no route {method} {path}", "type": "not_found"}}, 404)
        auth = {k.lower(): v for k, v in headers.items()}.get("authorization")
        if auth != f"Bearer {self.api_key}":
            return json_reply(
                {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}, 401
            )
        body = json.loads(raw)
        answer = self._next()
        if isinstance(answer, Busy):
            status, extra, data = json_reply(
                {"error": {"message": "Rate limit reached", "type": "rate_limit_error", "code": "rate_limit"}}, 429
            )
            return status, {**extra, "Retry-After": str(answer.retry_after)}, data
        message: dict[str, Any] = {"role": "assistant", "content": None}
        finish = "stop"
        tools = [t["function"]["name"] for t in body.get("tools") or []]
        output_tool = next((t for t in tools if t.startswith("final_result")), None)
        if isinstance(answer, dict) and output_tool:
            n = len(self.requests)
            call = {
                "id": f"call_{n}",
                "type": "function",
                "function": {"name": output_tool, "arguments": json.dumps(answer)},
            }
            message["tool_calls"] = [call]
            finish = "tool_calls"
        else:
            message["content"] = answer if isinstance(answer, str) else json.dumps(answer)
        prompt_chars = sum(len(json.dumps(m.get("content"))) for m in body.get("messages", []))
        completion = json.dumps(message)
        return json_reply(
            {
                "id": f"chatcmpl-{len(self.requests)}",
                "object": "chat.completion",
                "created": 1_700_000_000,
                "model": body.get("model", "fake"),
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": {
                    "prompt_tokens": prompt_chars // 4 + 1,
                    "completion_tokens": len(completion) // 4 + 1,
                    "total_tokens": prompt_chars // 4 + len(completion) // 4 + 2,
                },
            }
        )

    def connection(self, *, model: str = "openai-chat:gpt-test", key: str | None = None) -> dict[str, Any]:
        """The common.ai connection (as AIRFLOW_CONN_... JSON) whose host is this server."""
        return {
            "conn_type": "pydanticai",
            "host": self.url,
            "password": self.api_key if key is None else key,
            "extra": {"model": model},
        }

    def close(self) -> None:
        self.server.close()
