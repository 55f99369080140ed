"""Fixtures for the story tests: a tiny random pipeline, a scripted OpenAI-compatible server, audio."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random pipeline (shapes vocabulary, 2 sampling steps) saved to a directory."""
    import torch

    from nanosora.config import DiTConfig, PipelineConfig, TextEncoderConfig, VAEConfig
    from nanosora.generate import Pipeline
    from nanosora.models.dit import VideoDiT
    from nanosora.models.text_encoder import load_text_encoder
    from nanosora.models.vae import VideoVAE

    torch.manual_seed(0)
    pipe = Pipeline(
        VideoVAE(VAEConfig(base_channels=8, channel_mult=(1, 2, 2), latent_channels=4)),
        VideoDiT(DiTConfig(in_channels=4, dim=32, depth=1, heads=2)),
        load_text_encoder(TextEncoderConfig()),
        PipelineConfig(steps=2, vocabulary="shapes"),
    )
    return pipe.save(tmp_path_factory.mktemp("tiny-model"))


def chat_reply(content: str, model: str = "test-model") -> dict[str, Any]:
    """A chat.completion response body."""
    return {
        "id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": model,
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }  # fmt: skip


class ChatServer:
    """A real HTTP server on 127.0.0.1 answering POST /v1/chat/completions from a script.

    Each request takes the next scripted behaviour: ("answer", text), ("slow", seconds, text),
    ("status", code). With the script empty it answers `default`. Requests are recorded.
    """

    def __init__(self) -> None:
        self.script: deque[tuple] = deque()
        self.requests: list[dict[str, Any]] = []
        self.default: tuple = ("status", 500)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep pytest output clean
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append({"path": self.path, "body": body})
                step = server.script.popleft() if server.script else server.default
                if step[0] == "slow":
                    time.sleep(step[1])
                    step = ("answer", step[2])
                if step[0] == "status":
                    self._send(
                        step[1],
                        {"error": {"message": f"scripted {step[1]}", "type": "server_error"}},
                    )
                elif self.path != "/v1/chat/completions":
                    self._send(404, {"error": {"message": "no such route"}})
                else:
                    self._send(200, chat_reply(step[1], body.get("model", "")))

            def _send(self, code: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def push(self, *steps: tuple) -> None:
        self.script.extend(steps)


@pytest.fixture
def chat_server() -> Iterator[ChatServer]:
    server = ChatServer()
    thread = threading.Thread(
        target=server.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


@pytest.fixture
def chat_cfg(chat_server: ChatServer):
    """A ChatConfig pointing at the scripted server, with short timeouts and no backoff."""
    from nanosora.story.chat import ChatConfig

    return ChatConfig(
        base_url=chat_server.url,
        model="test-model",
        api_key="k",
        timeout=2.0,
        retries=2,
        backoff=0.0,
    )


@pytest.fixture
def sine(tmp_path: Path):
    """Factory: sine(name, codec) writes a 3 s mono 440 Hz sine (pcm_s16le .wav or aac .m4a)."""
    return lambda name, codec: _write_sine(tmp_path / name, codec)


def _write_sine(path: Path, codec: str, seconds: float = 3.0, rate: int = 22050) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    pcm = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    fmt, data = ("s16", (pcm * 32767).astype(np.int16)) if codec == "pcm_s16le" else ("fltp", pcm)
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=rate, layout="mono")
        for off in range(0, len(data), 2048):
            f = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(data[None, off : off + 2048]), format=fmt, layout="mono"
            )
            f.sample_rate, f.pts = rate, off
            c.mux(s.encode(f))
        c.mux(s.encode(None))
    return path
