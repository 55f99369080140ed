"""An OpenAI-compatible chat-completions client that survives real endpoints, and JSON repair.

Local servers (llama.cpp, vLLM, Ollama) and hosted APIs all speak `POST {base}/chat/completions`;
the `openai` client talks to any of them. What they do not all do is answer well: requests time
out, servers return 500 under load, and models wrap JSON in code fences, leave trailing commas,
use Python quotes or stop mid-object. So:

- transport retries (timeouts, connection errors, 5xx, 429) with exponential backoff are ours,
  not the client's (`max_retries=0`), so tests and users control them with one setting;
- `repair_json` fixes the usual slips before parsing;
- `ChatClient.complete_json` validates the parsed answer and, if it is unusable, tells the model
  what was wrong and asks again.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from nanosora.story.schema import StoryError

T = TypeVar("T")


@dataclass(frozen=True)
class ChatConfig:
    """Where the chat model lives; empty fields fall back to the environment."""

    base_url: str = ""  # env OPENAI_BASE_URL, e.g. http://127.0.0.1:8080/v1 for llama.cpp
    model: str = ""  # env NANOSORA_CHAT_MODEL
    api_key: str = ""  # env OPENAI_API_KEY; local servers accept any
    timeout: float = 120.0  # seconds per request
    retries: int = 3  # extra attempts after a failed request or an unusable answer
    backoff: float = 1.0  # seconds before the first retry; doubles each time
    temperature: float = 0.7

    def resolved(self) -> ChatConfig:
        """Fill empty fields from the environment; StoryError naming the flag if still missing."""
        cfg = replace(
            self,
            base_url=self.base_url or os.environ.get("OPENAI_BASE_URL", ""),
            model=self.model or os.environ.get("NANOSORA_CHAT_MODEL", ""),
            api_key=self.api_key or os.environ.get("OPENAI_API_KEY", ""),
        )
        if not cfg.base_url and not cfg.api_key:
            raise StoryError(
                "no chat endpoint: pass --chat-base-url URL (e.g. http://127.0.0.1:8080/v1 for a local "
                "llama.cpp, vLLM or Ollama server) or set OPENAI_BASE_URL, or set OPENAI_API_KEY for OpenAI"
            )
        if not cfg.model:
            raise StoryError(
                "no chat model named: pass --chat-model NAME or set NANOSORA_CHAT_MODEL"
            )
        if cfg.timeout <= 0 or cfg.retries < 0 or cfg.backoff < 0:
            raise StoryError("chat timeout must be > 0, retries and backoff >= 0")
        return cfg


class ChatClient:
    """Chat completions with retries, timeouts and validated JSON answers."""

    def __init__(self, cfg: ChatConfig) -> None:
        from openai import OpenAI

        self.cfg = cfg.resolved()
        self.client = OpenAI(
            base_url=self.cfg.base_url or None,
            # The client insists on a key; local servers ignore whatever it is.
            api_key=self.cfg.api_key or "not-needed",
            timeout=self.cfg.timeout,
            max_retries=0,
        )
        self.where = self.cfg.base_url or "the OpenAI API"

    def complete(self, messages: list[dict[str, str]]) -> str:
        """The assistant's answer text; retries transient failures, StoryError when out of tries."""
        import openai

        last: Exception | None = None
        for attempt in range(self.cfg.retries + 1):
            if attempt:
                time.sleep(self.cfg.backoff * 2 ** (attempt - 1))
            try:
                resp = self.client.chat.completions.create(
                    model=self.cfg.model,
                    messages=messages,
                    temperature=self.cfg.temperature,  # type: ignore[arg-type]
                )
            except (
                openai.APIConnectionError,
                openai.InternalServerError,
                openai.RateLimitError,
            ) as e:
                last = e  # timeouts are APIConnectionError: worth another try
                continue
            except openai.APIStatusError as e:
                # 4xx other than 429: the request itself is wrong (model name, key); retrying won't help.
                raise StoryError(f"chat endpoint {self.where} refused the request: {e}") from None
            text = resp.choices[0].message.content if resp.choices else None
            if text and text.strip():
                return text
            last = StoryError("empty answer")
        raise StoryError(
            f"chat endpoint {self.where} failed {self.cfg.retries + 1} times "
            f"(timeout {self.cfg.timeout:g}s); last error: {_describe(last)}"
        )

    def complete_json(
        self, messages: list[dict[str, str]], parse: Callable[[Any], T], what: str
    ) -> T:
        """Ask until `parse(repaired JSON answer)` succeeds; the model sees each problem."""
        history = list(messages)
        problem = ""
        for _ in range(self.cfg.retries + 1):
            answer = self.complete(history)
            try:
                return parse(repair_json(answer))
            except ValueError as e:  # StoryError and JSON errors are ValueErrors
                problem = str(e)
                history += [
                    {"role": "assistant", "content": answer},
                    {"role": "user", "content": f"That answer is not usable:\n{problem}\n"
                                                "Reply again with only the corrected JSON."},
                ]  # fmt: skip
        raise StoryError(
            f"{what}: the chat model gave no usable answer in {self.cfg.retries + 1} tries; "
            f"last problem: {problem}"
        )


def _describe(e: Exception | None) -> str:
    """A short description of a client exception (type and message)."""
    return "none" if e is None else f"{type(e).__name__}: {e}"


# ---- JSON repair -------------------------------------------------------------------------

_FENCE = re.compile(r"```[A-Za-z0-9_-]*[ \t]*\n?(.*?)(?:```|$)", re.DOTALL)
_THINK = re.compile(r"<think>.*?</think>", re.DOTALL)  # reasoning models' scratchpad
_LITERALS = {"true": "true", "True": "true", "false": "false", "False": "false",
             "null": "null", "None": "null"}  # fmt: skip
_CLOSERS = {"{": "}", "[": "]"}


def repair_json(text: str) -> Any:
    """Parse a chat model's JSON answer, repairing the usual slips; ValueError if beyond repair.

    Handles: prose and code fences around the JSON, `<think>` blocks, trailing commas, missing
    commas between items, single-quoted strings, unquoted keys, Python True/False/None, // and
    /* */ comments, raw newlines inside strings, and an answer cut off before its closing brackets.
    """
    body = _THINK.sub("", text).strip()
    fence = _FENCE.search(body)
    if fence:
        body = fence.group(1).strip()
    try:
        return json.loads(body)
    except json.JSONDecodeError:
        pass
    start = min((i for i in (body.find("{"), body.find("[")) if i >= 0), default=-1)
    if start < 0:
        raise ValueError(f"the answer contains no JSON object: {_snippet(text)}")
    fixed = _JsonFixer(body[start:]).run()
    try:
        return json.loads(fixed)
    except json.JSONDecodeError as e:
        raise ValueError(
            f"the answer is not valid JSON even after repair ({e}): {_snippet(text)}"
        ) from None


def _snippet(text: str, n: int = 200) -> str:
    """The first `n` characters of an answer, on one line, for error messages."""
    flat = " ".join(text.split())
    return repr(flat[:n] + ("..." if len(flat) > n else ""))


class _JsonFixer:
    """A one-pass scanner that rewrites almost-JSON into JSON (see `repair_json`)."""

    def __init__(self, text: str) -> None:
        self.s, self.i, self.out = text, 0, []
        self.stack: list[str] = []
        self.after_value = False  # the last token ended a value: a new value needs a comma first

    def run(self) -> str:
        """Rewrite until the top-level value closes (trailing prose is dropped) or text ends."""
        while self.i < len(self.s):
            ch = self.s[self.i]
            if ch in " \t\r\n":
                self.i += 1
            elif self.s.startswith("//", self.i) or ch == "#":
                self._skip_to("\n")
            elif self.s.startswith("/*", self.i):
                self._skip_to("*/")
            elif ch in "{[":
                self._value_start()
                self.out.append(ch)
                self.stack.append(ch)
                self.i += 1
            elif ch in "}]":
                if self._close():
                    break
            elif ch == ",":
                self._comma()
            elif ch == ":":
                self.out.append(":")
                self.after_value, self.i = False, self.i + 1
            elif ch in "\"'":
                self._string(ch)
            else:
                self._bare_word()
        while self.stack:  # cut off mid-answer: close what is open
            self._drop_trailing_comma()
            self.out.append(_CLOSERS[self.stack.pop()])
        return "".join(self.out)

    def _skip_to(self, end: str) -> None:
        j = self.s.find(end, self.i)
        self.i = len(self.s) if j < 0 else j + len(end)

    def _value_start(self) -> None:
        if self.after_value:
            self.out.append(",")
        self.after_value = False

    def _drop_trailing_comma(self) -> None:
        if self.out and self.out[-1] == ",":
            self.out.pop()

    def _close(self) -> bool:
        """Emit the closer for the innermost open bracket; True when the top level closed."""
        self._drop_trailing_comma()
        if self.stack:
            self.out.append(_CLOSERS[self.stack.pop()])
        self.i += 1
        self.after_value = True
        return not self.stack

    def _comma(self) -> None:
        if self.out and self.out[-1] not in ",[{":  # doubled commas collapse
            self.out.append(",")
        self.after_value, self.i = False, self.i + 1

    def _string(self, quote: str) -> None:
        """Copy a string as a double-quoted JSON string; a quote only closes it before , : } ]."""
        self._value_start()
        self.out.append('"')
        self.i += 1
        while self.i < len(self.s):
            ch = self.s[self.i]
            if ch == "\\" and self.i + 1 < len(self.s):
                nxt = self.s[self.i + 1]
                self.out.append(nxt if nxt == "'" else ch + nxt)  # \' is not a JSON escape
                self.i += 2
                continue
            if ch == quote and self._closes_string():
                self.i += 1
                break
            self.out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t", '"': '\\"'}.get(ch, ch))
            self.i += 1
        self.out.append('"')
        self.after_value = True

    def _closes_string(self) -> bool:
        """Whether the quote at `self.i` ends the string (else it is an apostrophe or inner quote)."""
        after = self.s[self.i + 1 :]
        rest = after.lstrip(" \t\r")
        # A line break right after the quote also ends it: the usual "missing comma" slip.
        return not rest.strip() or rest[0] in ",:}]\n" or rest.startswith("//")

    def _bare_word(self) -> None:
        """Numbers and literals as they are; unknown words become strings (unquoted keys)."""
        m = re.compile(r"[A-Za-z0-9_.+\-]+").match(self.s, self.i)
        if not m:  # a stray character: drop it
            self.i += 1
            return
        word = m.group(0)
        self._value_start()
        if word in _LITERALS:
            self.out.append(_LITERALS[word])
        elif re.fullmatch(r"-?\d+(\.\d+)?([eE][+-]?\d+)?", word):
            self.out.append(word)
        else:
            self.out.append(json.dumps(word))
        self.i = m.end()
        self.after_value = True
