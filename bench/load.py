"""Many participants at once through real ``streamlit run`` servers: a Prolific launch.

Prints figures, not a test. Starts ``--processes`` app servers on free local ports (each a
``streamlit run app.py`` with the agent API on) sharing one database, loads a one-condition
SHARDED study whose model is ``lab/scripted`` streaming at a human-like pace (0.5 s to the
first piece, then 40 pieces a second), and drives ``--participants`` participants through
it at once over HTTP with Streamlit's agent API (``POST /_stcore/agent/interact``), each
through the app's own code path as a browser would: open link → consent → start → several
chat turns sharing one card each → "I have my answer" → the post-item and post-study
questions → the completion code. Each participant stays on one server (a sticky proxy).

Then it checks every participant's turns in the database against what the client sent:

- **lost**: a message the client sent that is not stored, or a reply the client waited for
  that is missing, partial or an error;
- **duplicated**: a message stored twice, or two replies to one message;
- **errors shown**: an exception element or the words "database is locked" in any page the
  clients saw.

Timing per chat turn is the client's wall time from sending a message to seeing the
whole reply on the page; **the lab's own time** is that minus the model's scripted
streaming time (latency + pieces × delay, read from the stored reply). Printed: median and
p95 of both, the same at N = 1 for the ratio, the servers' CPU seconds per turn and memory
per participant (resident set growth over the run, divided by N).

Usage: ``python bench/load.py [--participants 200] [--turns 3] [--db sqlite|postgres]
[--processes P] [--postgres-url URL]``. ``--db postgres`` uses ``--postgres-url`` (default
``$TEST_DATABASE_URL``) and empties it first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

LATENCY = 0.5
TOKEN_DELAY = 0.025
REPLY = (
    "Thanks, that helps. Here is what I have so far, and I will update it as you tell me more "
    "about the task: nothing is missing that I can see yet."
)


def spec() -> str:
    """The load study: sharded items only, one SHARDED condition, the scripted model at a human pace."""
    items = ROOT / "studies" / "items" / "demo.jsonl"
    return f"""\
slug: load
title: Load test
consent: "A consent text."
instructions: "Share one card per message."
models:
  bot:
    model: lab/scripted
    params: {{script: fixed, reply: "{REPLY}", latency: {LATENCY}, token_delay: {TOKEN_DELAY}}}
conditions:
  sharded: {{model: bot, reveal: SHARDED, kinds: [sharded]}}
items:
  - file: {items}
plan:
  items_per_participant: 1
  design: between
  balance: least-filled
  seed: 1
  turn_limit: 20
  timeout_minutes: 90
questions:
  post_item:
    - {{key: understood, text: "The assistant understood me.", type: likert, scale: 5, options: ["no", "yes"]}}
  post_study:
    - {{key: comments, text: "Anything else?", type: text, required: false}}
completion:
  code: LOAD0001
"""


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """One ``streamlit run`` process."""

    port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        """The agent API's interact endpoint."""
        return f"http://127.0.0.1:{self.port}/_stcore/agent/interact"

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        """Resident memory in MB."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0


def start_servers(n: int, env: dict[str, str], max_sessions: int) -> list[Server]:
    """Start ``n`` app servers and wait until each answers."""
    servers = []
    for _ in range(n):
        port = free_port()
        cmd = [
            sys.executable, "-m", "streamlit", "run", "app.py",
            "--server.port", str(port), "--server.headless", "true",
            "--server.enableAgentApi", "true",
            "--server.agentMaxSessions", str(max_sessions),
            "--server.agentWaitTimeout", "120",
            "--browser.gatherUsageStats", "false",
        ]  # fmt: skip
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        servers.append(Server(port, proc))
    deadline = time.time() + 60
    for server in servers:
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{server.port}/_stcore/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline or server.proc.poll() is not None:
                raise SystemExit(f"server on port {server.port} did not start")
            time.sleep(0.3)
    return servers


@dataclass
class Client:
    """What one participant sent, saw and waited for."""

    pid: str
    server: Server
    sent: list[str] = field(default_factory=list)
    turn_seconds: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    completed: bool = False
    code: str = ""


class Participant:
    """Drives one participant through the app over the agent API."""

    def __init__(self, http: httpx.AsyncClient, client: Client, turns: int) -> None:
        self.http = http
        self.c = client
        self.turns = turns
        self.sid: str | None = None
        self.snap: dict[str, Any] = {}

    async def post(self, body: dict[str, Any]) -> None:
        """Send one request, waiting out runs still going; keep the page it returns."""
        if self.sid:
            body["session_id"] = self.sid
        for _ in range(50):
            r = await self.http.post(self.c.server.url, json=body, timeout=180)
            data = r.json()
            if r.status_code == 202 or data.get("code") in ("wait_timed_out", "session_busy"):
                self.sid = data.get("session_id", self.sid)
                body = {"session_id": self.sid}
                await asyncio.sleep(0.2)
                continue
            if r.status_code != 200:
                raise RuntimeError(f"HTTP {r.status_code}: {data}")
            self.snap = data
            self.sid = data["session_id"]
            self.check_errors()
            return
        raise RuntimeError("the app never settled")

    def check_errors(self) -> None:
        """Note an exception or a locked database shown on the page."""
        text = json.dumps(self.snap.get("tree", {}))
        if '"type": "exception"' in text or "database is locked" in text.lower():
            self.c.errors.append(text[:300])
        if self.snap.get("status") == "error":
            self.c.errors.append(f"app status error: {text[:300]}")

    def action(self, label: str | None = None, type_: str | None = None, prefix: str | None = None) -> dict[str, Any] | None:
        """The first action with this label, widget type or key prefix."""
        for a in self.snap.get("actions", []):
            if label is not None and a.get("label") == label:
                return a
            if type_ is not None and a.get("type") == type_:
                return a
            if prefix is not None and a["key"].startswith(prefix):
                return a
        return None

    async def trigger(self, action: dict[str, Any], value: Any = None, state: dict[str, Any] | None = None) -> None:
        """Fire an action (with a value and other widgets' state)."""
        body: dict[str, Any] = {"trigger": {"key": action["key"]}}
        if value is not None:
            body["trigger"]["value"] = value
        if state:
            body["widget_state"] = state
        await self.post(body)

    def element(self, key: str) -> dict[str, Any]:
        """The element with this widget key in the last page seen."""

        def find(node: Any) -> dict[str, Any] | None:
            if isinstance(node, dict):
                if node.get("key") == key:
                    return node
                for child in node.get("children", []):
                    if (hit := find(child)) is not None:
                        return hit
            return None

        return find(self.snap.get("tree", {})) or {}

    def cards(self) -> list[str]:
        """The card texts on the page, in order."""
        out: list[str] = []

        def walk(node: Any, after_card: bool) -> bool:
            if isinstance(node, dict):
                body = node.get("props", {}).get("body", "")
                if node.get("type") == "markdown" and isinstance(body, str) and body.startswith("**Card "):
                    return True
                if after_card and node.get("type") == "text":
                    out.append(body)
                    after_card = False
                for child in node.get("children", []):
                    after_card = walk(child, after_card)
            return after_card

        walk(self.snap.get("tree", {}), False)
        return out

    def replying(self) -> bool:
        """Whether a reply is still arriving (a stop button, or no chat input to write in)."""
        return self.action(label="Stop") is not None or self.action(type_="chat_input") is None

    async def run(self) -> None:
        """Open the link, consent, chat, finish the item, answer the questions."""
        await self.post(
            {"query_params": {"study": ["load"], "PROLIFIC_PID": [self.c.pid], "STUDY_ID": ["bench"], "SESSION_ID": [self.c.pid]}}
        )
        for label in ("I agree to take part", "Start"):
            a = self.action(label=label)
            if a is None:
                raise RuntimeError(f"no '{label}' button")
            await self.trigger(a)
        for turn in range(self.turns):
            cards = self.cards()
            if turn >= len(cards):
                break
            text = cards[turn]
            chat = self.action(type_="chat_input")
            if chat is None:
                raise RuntimeError("no chat input")
            state = {}
            pick = self.action(prefix="pick_")
            if pick is not None and turn > 0:
                state[pick["key"]] = f"Card {turn + 1}"
            start = time.perf_counter()
            await self.trigger(chat, value=text)
            self.c.sent.append(text)
            while self.replying():
                await asyncio.sleep(0.1)
                await self.post({})
            self.c.turn_seconds.append(time.perf_counter() - start)
        done = self.action(label="I have my answer")
        if done is None:
            raise RuntimeError("no 'I have my answer' button")
        await self.trigger(done)
        for _ in range(5):
            submit = self.action(type_="form_submit_button")
            if submit is None:
                break
            state = {}
            for a in self.snap.get("actions", []):
                options = self.element(a["key"]).get("props", {}).get("options")
                if a.get("type") in ("radio", "selectbox") and options:
                    state[a["key"]] = options[-1]
            await self.trigger(submit, state=state)
        text = json.dumps(self.snap.get("tree", {}))
        if "LOAD0001" in text:
            self.c.completed = True
            self.c.code = "LOAD0001"


async def drive(servers: list[Server], n: int, turns: int, tag: str) -> list[Client]:
    """Run ``n`` participants at once, round-robin over the servers."""
    limits = httpx.Limits(max_connections=n + 10, max_keepalive_connections=n + 10)
    async with httpx.AsyncClient(limits=limits) as http:
        clients = [Client(f"{tag}-{i:04d}", servers[i % len(servers)]) for i in range(n)]

        async def one(c: Client) -> None:
            await asyncio.sleep(random.uniform(0, min(5.0, n * 0.02)))
            try:
                await Participant(http, c, turns).run()
            except Exception as e:  # noqa: BLE001 - a failed participant is a finding, reported below
                c.errors.append(f"{type(e).__name__}: {e}")

        await asyncio.gather(*(one(c) for c in clients))
    return clients


def audit(db_url: str, clients: list[Client]) -> dict[str, Any]:
    """Compare what each client sent with what the database holds."""
    from sqlalchemy import select

    from lab.db import make_engine
    from lab.schema import ChatSession as S
    from lab.schema import Participant as P
    from lab.schema import Turn as T

    engine = make_engine(db_url)
    lost = duplicated = partial = errored = 0
    lab_times: list[float] = []
    with engine.connect() as conn:
        for c in clients:
            rows = conn.execute(
                select(T.role, T.content, T.partial, T.error, T.index)
                .join(S, S.id == T.session_id)
                .join(P, P.id == S.participant_id)
                .where(P.prolific_pid == c.pid)
                .order_by(S.id, T.index)
            ).all()
            users = [r.content for r in rows if r.role == "user"]
            replies = [r for r in rows if r.role == "assistant"]
            lost += sum(1 for text in c.sent if text not in users)
            duplicated += max(0, len(users) - len(set(users))) + max(0, len(replies) - len(users))
            lost += max(0, len(users) - len(replies))
            partial += sum(1 for r in replies if r.partial)
            errored += sum(1 for r in replies if r.error)
            for seconds, reply in zip(c.turn_seconds, replies, strict=False):
                model = LATENCY + TOKEN_DELAY * max(0, len((reply.content or "").split()) - 1)
                lab_times.append(seconds - model)
    engine.dispose()
    return {"lost": lost, "duplicated": duplicated, "partial": partial, "errored": errored, "lab_times": lab_times}


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def run_once(args: argparse.Namespace, n: int, env: dict[str, str], db_url: str, tag: str) -> dict[str, Any]:
    """One launch of ``n`` participants; returns its figures."""
    servers = start_servers(args.processes, env, max_sessions=n + 20)
    try:
        # One warm-up participant per server: the first chat turn of a process imports litellm.
        asyncio.run(drive(servers, len(servers), 1, f"{tag}-warm"))
        cpu0 = [s.cpu_seconds() for s in servers]
        rss0 = [s.rss_mb() for s in servers]
        t0 = time.perf_counter()
        clients = asyncio.run(drive(servers, n, args.turns, tag))
        wall = time.perf_counter() - t0
        cpu = sum(s.cpu_seconds() - c for s, c in zip(servers, cpu0, strict=True))
        rss = sum(s.rss_mb() - r for s, r in zip(servers, rss0, strict=True))
    finally:
        for s in servers:
            s.proc.terminate()
        for s in servers:
            try:
                s.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                s.proc.kill()
    found = audit(db_url, clients)
    turns = sum(len(c.turn_seconds) for c in clients)
    shown = [e for c in clients for e in c.errors]
    return {
        "n": n,
        "wall": wall,
        "turns": turns,
        "completed": sum(c.completed for c in clients),
        "errors": shown,
        "turn_seconds": [t for c in clients for t in c.turn_seconds],
        "cpu_per_turn": cpu / max(1, turns),
        "mem_per_participant": rss / max(1, n),
        **found,
    }


def report(label: str, r: dict[str, Any]) -> None:
    """Print one run's figures."""
    ts, lab = r["turn_seconds"], r["lab_times"]
    print(f"\n{label}: {r['n']} participants, {r['turns']} chat turns in {r['wall']:.1f} s; {r['completed']} completed")
    print(f"  lost turns {r['lost']}, duplicated {r['duplicated']}, partial replies {r['partial']}, error replies {r['errored']}")
    print(f"  errors shown to participants: {len(r['errors'])}")
    for e in r["errors"][:5]:
        print(f"    {e[:200]}")
    if ts:
        print(f"  send → whole reply seen: median {statistics.median(ts) * 1000:.0f} ms, p95 {pct(ts, 95) * 1000:.0f} ms")
        print(
            f"  the lab's own time per turn: median {statistics.median(lab) * 1000:.0f} ms, "
            f"p95 {pct(lab, 95) * 1000:.0f} ms (target p95 ≤ 250 ms)"
        )
    print(f"  server CPU per turn {r['cpu_per_turn'] * 1000:.0f} ms; memory per participant {r['mem_per_participant']:.2f} MB")


def prepare(args: argparse.Namespace) -> tuple[str, dict[str, str], Path]:
    """A fresh database with the load study open; the servers' environment."""
    tmp = Path(tempfile.mkdtemp(prefix="lab-load-"))
    if args.db == "postgres":
        db_url = args.postgres_url or os.environ.get("TEST_DATABASE_URL", "")
        if not db_url:
            raise SystemExit("--db postgres needs --postgres-url or TEST_DATABASE_URL")
        from sqlalchemy import text

        from lab.db import make_engine

        engine = make_engine(db_url)
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        engine.dispose()
    else:
        db_url = f"sqlite:///{tmp / 'lab.db'}"
    env = {**os.environ, "DATABASE_URL": db_url, "LAB_DATA_DIR": str(tmp), "LAB_ENV_FILE": os.devnull}
    (tmp / "load.yaml").write_text(spec())
    for cmd in (["migrate"], ["study", "load", str(tmp / "load.yaml")], ["study", "open", "load"]):
        subprocess.run([sys.executable, "-m", "lab", *cmd], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    return db_url, env, tmp


def main() -> None:
    """Parse the flags, run N = 1 then N = ``--participants``, print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--participants", type=int, default=200)
    ap.add_argument("--turns", type=int, default=3)
    ap.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--postgres-url", default="")
    ap.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    db_url, env, tmp = prepare(args)
    print(
        f"{args.processes} server process(es) on {args.db}; "
        f"scripted model: {LATENCY} s to the first piece, then {1 / TOKEN_DELAY:.0f}/s"
    )
    try:
        single = run_once(args, 1, env, db_url, "one")
        report("N = 1", single)
        many = run_once(args, args.participants, env, db_url, "many")
        report(f"N = {args.participants}", many)
        if single["lab_times"] and many["lab_times"]:
            print(
                f"\nratio of p95 lab time, N = {args.participants} to N = 1: "
                f"{pct(many['lab_times'], 95) / max(1e-3, pct(single['lab_times'], 95)):.1f}×"
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
