"""OpenAI-compatible HTTP servers for the tests, on loopback only.

`LlamaServer` is llama-cpp-python's own server running the shipped GGUF: a real server of
the kind researchers self-host. `FaultyServer` answers like one but fails on purpose (an
HTTP error, a reply that never comes, a stream cut mid-reply), so every fault a provider
can show is met as the lab would meet it over the network.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

STARTUP_SECONDS = 60.0
"""How long the real server may take to load the model and answer (the machine is shared)."""

ALIAS = "smollm2-server"
"""The name the real server answers to (``--model_alias``)."""


def free_port() -> int:
    """A TCP port on loopback that nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_installed() -> bool:
    """Whether llama-cpp-python and its server extra can be imported."""
    try:
        import fastapi  # noqa: F401
        import llama_cpp  # noqa: F401
        import sse_starlette  # noqa: F401
        import starlette_context  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        return False
    return True


class LlamaServer:
    """``python -m llama_cpp.server`` with one model, on a free loopback port."""

    def __init__(self, model_path: Path, log: Path, *, alias: str = ALIAS, port: int | None = None) -> None:
        """Prepare the server.

        Args:
            model_path: The GGUF file.
            log: Where its output goes (read when it fails to start).
            alias: The model name it answers to.
            port: The port (default: a free one).
        """
        self.model_path = model_path
        self.log = log
        self.alias = alias
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def api_base(self) -> str:
        """The server's OpenAI-compatible base URL."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def model(self) -> str:
        """The lab's model string for it."""
        return f"openai/{self.alias}"

    @property
    def params(self) -> dict[str, Any]:
        """The model parameters a study gives it (no key: the server needs none)."""
        return {"api_base": self.api_base}

    def start(self) -> LlamaServer:
        """Start the server and wait until it lists its model.

        Raises:
            RuntimeError: it stopped or did not answer in time (with the end of its log).
        """
        command = [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(self.model_path),
            "--model_alias",
            self.alias,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--n_threads",
            "1",
            "--n_ctx",
            "2048",
            # By default a new request cuts the one being answered short: a simulation's
            # concurrent conversations would get each other's replies cut.
            "--interrupt_requests",
            "False",
        ]
        env = os.environ | {"PYTHONUNBUFFERED": "1"}
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            if self.answering():
                return self
            time.sleep(0.2)
        self.stop()
        tail = self.log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"the model server did not start on port {self.port}:\n{tail}")

    def answering(self) -> bool:
        """Whether the server lists its model now."""
        try:
            with urllib.request.urlopen(f"{self.api_base}/models", timeout=2) as response:
                return self.alias in response.read().decode()
        except (OSError, urllib.error.URLError):
            return False

    def stop(self) -> None:
        """Stop the server (SIGKILL after five seconds of SIGTERM)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}


def _chunk(text: str | None, finish: str | None = None) -> dict[str, Any]:
    delta = {"content": text} if text is not None else {}
    return {
        "id": "chatcmpl-faulty",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "faulty",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


@dataclass
class Fault:
    """What the faulty server does with the next requests."""

    status: int = 200
    """HTTP status of the answer (200: a normal reply, unless ``cut``)."""
    message: str = ""
    """The error message in the body of an error answer."""
    headers: dict[str, str] = field(default_factory=dict)
    """Extra headers (``Retry-After``)."""
    hang: bool = False
    """Never answer (until the server stops): the client times out."""
    cut: bool = False
    """Stream two pieces of a reply, then close the connection mid-body."""
    times: int | None = None
    """Fail this many requests, then answer normally (None: every request)."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Faulty

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 — the base class names it so
        """Quiet: the tests read what was requested from `FaultyServer.requests`."""

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw or b"{}")
        except ValueError:
            return {}

    def do_GET(self) -> None:  # noqa: N802 — the name http.server calls
        """``/v1/models``: the one model."""
        self._json(200, {"object": "list", "data": [{"id": "faulty", "object": "model"}]})

    def do_POST(self) -> None:  # noqa: N802 — the name http.server calls
        """``/v1/chat/completions``: fail as told, or answer."""
        body = self._body()
        owner = self.server.owner
        owner.requests.append(time.monotonic())
        fault = owner.fault
        failing = fault.times is None or fault.times > 0
        if fault.times is not None and fault.times > 0:
            fault.times -= 1
        if failing and fault.hang:
            owner.stopping.wait(30)
            return
        if failing and fault.status != 200:
            kind = {401: "invalid_api_key", 404: "model_not_found", 429: "rate_limit_exceeded"}.get(fault.status, "server_error")
            payload = {"error": {"message": fault.message or f"failing with {fault.status}", "type": kind, "code": kind}}
            self._json(fault.status, payload, fault.headers)
            return
        pieces = ["The answer ", "is five."]
        if not body.get("stream"):
            self._json(
                200,
                {
                    "id": "chatcmpl-faulty",
                    "object": "chat.completion",
                    "created": 0,
                    "model": "faulty",
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": "".join(pieces)}, "finish_reason": "stop"}
                    ],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
                },
            )
            return
        self.send_response(200)
        for name, value in SSE_HEADERS.items():
            self.send_header(name, value)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for piece in pieces:
            self._send_chunk(f"data: {json.dumps(_chunk(piece))}\n\n".encode())
            if failing and fault.cut:
                break
        if failing and fault.cut:
            # The server went away mid-reply: the chunked body never gets its last chunk.
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._send_chunk(f"data: {json.dumps(_chunk(None, 'stop'))}\n\n".encode())
        self._send_chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")

    def _send_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _json(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


class _Faulty(ThreadingHTTPServer):
    daemon_threads = True
    owner: FaultyServer


class FaultyServer:
    """An OpenAI-compatible chat server on loopback that fails as a test tells it to."""

    def __init__(self) -> None:
        """Start serving on a free loopback port, answering normally until told otherwise."""
        self.fault = Fault()
        self.requests: list[float] = []
        """When each chat request arrived (monotonic seconds)."""
        self.stopping = threading.Event()
        self._server = _Faulty(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="faulty-server", daemon=True)
        self._thread.start()

    @property
    def api_base(self) -> str:
        """The server's OpenAI-compatible base URL."""
        return f"http://127.0.0.1:{self.port}/v1"

    def fail(self, **fault: Any) -> None:
        """Fail from now on as described (see `Fault`); ``fail()`` answers normally again."""
        self.fault = Fault(**fault)
        self.requests.clear()

    def close(self) -> None:
        """Stop serving and release any request left hanging."""
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
