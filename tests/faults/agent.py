"""A ``streamlit run app.py`` server with Streamlit's agent API on, and a participant driving it over HTTP.

The agent API (``--server.enableAgentApi true``) runs the app's own pages for a client
that posts JSON to ``/_stcore/agent/interact``: first ``{"query_params": …}`` to open a
URL, then ``{"session_id": …, "trigger": {"key": …, "value": …}}`` to press a button or
send a chat message. Each answer lists the page's ``actions`` (key, label, type) and its
element ``tree``. Widgets are found by their label or type, never by their keys.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from tests.browser.staff_server import STARTUP_SECONDS, free_port, healthy

ROOT = Path(__file__).resolve().parents[2]


class AppServer:
    """One ``streamlit run app.py`` process with the agent API on.

    Args:
        folder: Where its log goes (and its data folder).
        database_url: The lab database it serves.
        secret: ``LAB_SECRET_KEY``; replicas of one lab share it.
        options: More ``streamlit run`` flags (``--server.agentMaxSessions``, …).
    """

    def __init__(self, folder: Path, database_url: str, secret: str, options: tuple[str, ...] = ()) -> None:
        self.folder = folder
        self.options = options
        self.database_url = database_url
        self.secret = secret
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = folder / f"server-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> AppServer:
        """Start the process and wait until Streamlit answers its health check."""
        env = {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "LAB_DATA_DIR": str(self.folder),
            "LAB_ENV_FILE": os.devnull,
            "LAB_SECRET_KEY": self.secret,
            "LAB_PUBLIC_URL": self.url,
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        }
        command = [
            sys.executable, "-m", "streamlit", "run", "app.py",
            "--server.port", str(self.port), "--server.address", "127.0.0.1", "--server.headless", "true",
            "--global.developmentMode", "false", "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
            "--server.enableAgentApi", "true", "--server.agentWaitTimeout", "60", *self.options,
        ]  # fmt: skip
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + STARTUP_SECONDS
        while not healthy(self.url):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the app did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.1)
        return self

    def cpu_seconds(self) -> float:
        """User and system CPU time the process has used so far."""
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        """Resident memory in MB."""
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def kill(self) -> None:
        """SIGKILL the server: no shutdown code of the lab's or Streamlit's runs."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        """Terminate the server if it still runs."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Visit:
    """One browser tab on the app, driven through the agent API.

    Args:
        server: The server it talks to.
        query_params: The URL's query (``{"t": [token]}``).
        timeout: Seconds one request may take.
        cookies: Cookies the tab sends (a staff sign-in).
    """

    def __init__(
        self, server: AppServer, query_params: dict[str, list[str]], timeout: float = 90, cookies: dict[str, str] | None = None
    ) -> None:
        self.server = server
        self.http = httpx.Client(timeout=timeout, cookies=cookies)
        self.session_id: str | None = None
        self.page: dict[str, Any] = {}
        self.post({"query_params": query_params})

    def close(self) -> None:
        """Close the HTTP client."""
        self.http.close()

    def post(self, body: dict[str, Any], settle: bool = True) -> dict[str, Any]:
        """Send one request; with ``settle``, poll until the page's script run has finished."""
        if self.session_id:
            body = {"session_id": self.session_id, **body}
        url = f"{self.server.url}/_stcore/agent/interact"
        for _ in range(300):
            response = self.http.post(url, json=body)
            data = response.json()
            self.session_id = data.get("session_id", self.session_id)
            busy = response.status_code == 202 or data.get("code") in ("wait_timed_out", "session_busy")
            if busy and settle:
                body = {"session_id": self.session_id}
                time.sleep(0.2)
                continue
            if response.status_code not in (200, 202):
                raise RuntimeError(f"HTTP {response.status_code}: {data}")
            self.page = data
            return data
        raise RuntimeError("the page never settled")

    def refresh(self) -> dict[str, Any]:
        """Ask for the page as it is now."""
        return self.post({})

    def action(self, label: str | None = None, type_: str | None = None) -> dict[str, Any] | None:
        """The first widget with this label or type on the page."""
        for found in self.page.get("actions", []):
            if (label is not None and found.get("label") == label) or (type_ is not None and found.get("type") == type_):
                return found
        return None

    def element(self, key: str) -> dict[str, Any]:
        """The element with this widget key on the page (empty when there is none)."""

        def find(node: Any) -> dict[str, Any] | None:
            if isinstance(node, dict):
                if node.get("key") == key:
                    return node
                for child in node.get("children", []):
                    if (hit := find(child)) is not None:
                        return hit
            return None

        return find(self.page.get("tree", {})) or {}

    def press(self, label: str) -> dict[str, Any]:
        """Press the button with this label."""
        button = self.action(label=label)
        if button is None:
            raise AssertionError(f"no {label!r} button on the page: {self.labels()}")
        return self.post({"trigger": {"key": button["key"]}})

    def write(self, message: str, settle: bool = True) -> dict[str, Any]:
        """Send a chat message; without ``settle`` it returns as soon as the server took it."""
        chat = self.action(type_="chat_input")
        if chat is None:
            raise AssertionError(f"no chat input on the page: {self.labels()}")
        return self.post({"trigger": {"key": chat["key"], "value": message}}, settle=settle)

    def write_in_background(self, message: str) -> threading.Thread:
        """Send a chat message from another thread (the request lasts as long as the reply streams).

        A failure of that request (the server was killed under it) is ignored: the test
        checks the database and the next visit instead.
        """

        def send() -> None:
            try:
                self.write(message)
            except (httpx.HTTPError, RuntimeError, ValueError):
                pass

        thread = threading.Thread(target=send, daemon=True)
        thread.start()
        return thread

    def labels(self) -> list[str]:
        """Labels of the page's widgets."""
        return [str(a.get("label")) for a in self.page.get("actions", [])]

    def text(self) -> str:
        """Everything on the page, as JSON text."""
        return json.dumps(self.page.get("tree", {}), ensure_ascii=False)

    def errors(self) -> list[str]:
        """Exceptions the page shows."""
        return [self.text()[:500]] if '"type": "exception"' in self.text() else []
