"""Many participants at once through real ``streamlit run`` servers: a Prolific launch.

Prints figures, not a test. Starts ``--processes`` app servers on free local ports (each a
``streamlit run app.py`` with the agent API on) sharing one database, loads a one-condition
SHARDED study whose model is ``lab/scripted`` streaming at a human-like pace (0.5 s to the
first piece, then 40 pieces a second), and drives ``--participants`` participants through
it at once over HTTP with Streamlit's agent API (``POST /_stcore/agent/interact``, through
``tests/faults/agent.py``, the driver the fault tests use), each through the app's own code
path as a browser would: open link → consent → start → several chat turns sharing one card
each → "I have my answer" → the post-item and post-study questions → the completion code.
Each participant stays on one server (a sticky proxy).

Participants arrive over ``--ramp`` seconds and take ``--think`` seconds on average (drawn
between half and one and a half times that) to read each reply and write the next message.
The default, 20 s, is quicker than people are: writing a card of 15–30 words in one's own
words at a typing speed of about 35 words a minute takes 25–50 s before any reading. With
``--think 0`` every participant sends the moment a reply ends, which no launch produces:
200 such clients ask for about 130 turns a second.

Then it checks every participant's turns in the database against what the client sent:

- **lost**: a message the client sent that is not stored, or a reply the client waited for
  that is missing, partial or an error;
- **duplicated**: a message stored twice, or two replies to one message;
- **errors shown**: an exception element or the words "database is locked" in any page the
  clients saw;
- **calm notices** (counted apart, not errors): a message given back because the database
  could not take it (the client sends it again after a pause, as a person would), the
  "study is busy" wait on consent or Start, the "temporarily unavailable" notice.

Timing per chat turn is the client's wall time from sending a message to seeing the
whole reply on the page; **the lab's own time** is that minus the model's scripted
streaming time (latency + pieces × delay, read from the stored reply). Printed: median and
p95 of both, the same at N = 1 for the ratio, the servers' CPU seconds per turn (every page
run of the participant's visit, divided by its chat turns), how busy the servers' cores were
and how much of a core the clients themselves used (they share the machine), and memory per
participant (resident set growth over the run, divided by N).

Usage: ``python bench/load.py [--participants 200] [--turns 3] [--db sqlite|postgres]
[--processes P] [--think SECONDS] [--ramp SECONDS] [--turns-csv FILE] [--postgres-url URL]``.
``--db postgres`` uses ``--postgres-url`` (default ``$TEST_DATABASE_URL``) and empties it
first.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from lab.flow import MESSAGE_NOT_SAVED  # noqa: E402 - found through ROOT, added above
from lab.ui import PAGE_UNAVAILABLE, STUDY_BUSY  # noqa: E402
from tests.faults.agent import AppServer, Visit  # noqa: E402

NOTICES = {"message given back": MESSAGE_NOT_SAVED, "study busy": STUDY_BUSY, "database out of reach": PAGE_UNAVAILABLE}
"""The calm notices a participant may see, counted apart from errors."""

SECRET = secrets.token_hex(32)
"""The servers' shared signing key (replicas of one lab share it)."""

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


@dataclass
class Client:
    """What one participant sent, saw and waited for."""

    pid: str
    server: AppServer
    sent: list[str] = field(default_factory=list)
    turn_seconds: list[float] = field(default_factory=list)
    turn_started: list[float] = field(default_factory=list)
    """When each chat turn was sent (``time.perf_counter()``)."""
    errors: list[str] = field(default_factory=list)
    completed: bool = False
    notices: dict[str, int] = field(default_factory=dict)
    """Calm notices seen, by kind: a message given back, the study busy, the database out of reach."""


class Participant(Visit):
    """One participant's tab, driven through the app as a person would, pausing to think and type."""

    def __init__(self, client: Client, turns: int, think: float) -> None:
        self.c = client
        self.turns = turns
        self.think = think
        link = {"study": ["load"], "PROLIFIC_PID": [client.pid], "STUDY_ID": ["bench"], "SESSION_ID": [client.pid]}
        super().__init__(client.server, link, timeout=180)

    def post(self, body: dict[str, Any], settle: bool = True) -> dict[str, Any]:
        """Send one request; note an exception or a locked database, and any calm notice, on the page it returns."""
        page = super().post(body, settle)
        text = self.text()
        if '"type": "exception"' in text or "database is locked" in text.lower():
            self.c.errors.append(text[:300])
        for kind, words in NOTICES.items():
            if words in text:
                self.c.notices[kind] = self.c.notices.get(kind, 0) + 1
        return page

    def send(self, message: str) -> None:
        """Write a message; one the page gives back (the database could not take it) is sent again, as a person would."""
        self.write(message)
        for _ in range(20):
            if MESSAGE_NOT_SAVED not in self.text():
                return
            time.sleep(random.uniform(1, 3))
            self.write(message)

    def pause(self) -> None:
        """Read the reply and write the next message: ``think`` seconds on average."""
        if self.think:
            time.sleep(random.uniform(0.5, 1.5) * self.think)

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

        walk(self.page.get("tree", {}), False)
        return out

    def replying(self) -> bool:
        """Whether a reply is still arriving (a stop button, or no chat input to write in)."""
        return self.action(label="Stop") is not None or self.action(type_="chat_input") is None

    def run(self) -> None:
        """Consent, chat, finish the item, answer the questions."""
        self.press("I agree to take part")
        self.press("Start")
        for turn in range(self.turns):
            cards = self.cards()
            if turn >= len(cards):
                break
            self.pause()
            start = time.perf_counter()
            self.send(cards[turn])
            self.c.sent.append(cards[turn])
            while self.replying():
                time.sleep(0.1)
                self.refresh()
            self.c.turn_seconds.append(time.perf_counter() - start)
            self.c.turn_started.append(start)
        self.pause()
        self.press("I have my answer")
        for _ in range(5):
            submit = self.action(type_="form_submit_button")
            if submit is None:
                break
            state = {}
            for a in self.page.get("actions", []):
                options = self.element(a["key"]).get("props", {}).get("options")
                if a.get("type") in ("radio", "selectbox") and options:
                    state[a["key"]] = options[-1]
            self.post({"trigger": {"key": submit["key"]}, "widget_state": state})
        self.c.completed = "LOAD0001" in self.text()


def drive(servers: list[AppServer], n: int, turns: int, tag: str, think: float, ramp: float) -> list[Client]:
    """Run ``n`` participants at once, arriving over ``ramp`` seconds, round-robin over the servers."""
    clients = [Client(f"{tag}-{i:04d}", servers[i % len(servers)]) for i in range(n)]

    def one(c: Client) -> None:
        time.sleep(random.uniform(0, ramp))
        try:
            visit = Participant(c, turns, think)
            try:
                visit.run()
            finally:
                visit.close()
        except Exception as e:  # noqa: BLE001 - a failed participant is a finding, reported below
            c.errors.append(f"{type(e).__name__}: {e}")

    threads = [threading.Thread(target=one, args=(c,), daemon=True) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
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
    rows_out: list[tuple[str, int, float, float, float]] = []
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
            for number, (seconds, started, reply) in enumerate(zip(c.turn_seconds, c.turn_started, replies, strict=False)):
                model = LATENCY + TOKEN_DELAY * max(0, len((reply.content or "").split()) - 1)
                lab_times.append(seconds - model)
                rows_out.append((c.pid, number + 1, started, seconds, seconds - model))
    engine.dispose()
    found = {"lost": lost, "duplicated": duplicated, "partial": partial, "errored": errored}
    return found | {"lab_times": lab_times, "turn_rows": rows_out}


def write_turns(path: Path, rows: list[tuple[str, int, float, float, float]]) -> None:
    """Write one CSV row per chat turn.

    Columns: participant, turn number, seconds since the first turn was sent, send → whole
    reply seen, and the lab's own share of it (seconds).
    """
    first = min((r[2] for r in rows), default=0.0)
    with path.open("w", newline="") as out:
        w = csv.writer(out)
        w.writerow(["participant", "turn", "sent_s", "seconds", "lab_seconds"])
        for pid, number, started, seconds, lab in rows:
            w.writerow([pid, number, f"{started - first:.3f}", f"{seconds:.3f}", f"{lab:.3f}"])


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def database_cpu_seconds() -> float:
    """CPU seconds used so far by this machine's Postgres processes (0 when none run here).

    Processes that ended since the last reading are not counted, so a difference of two
    readings is a lower bound (Postgres keeps one process per connection, and the app's
    pools keep their connections).
    """
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            raw = stat.read_text()
        except OSError:
            continue
        name, rest = raw[raw.index("(") + 1 : raw.rindex(")")], raw[raw.rindex(")") + 2 :].split()
        if name.startswith("postgres"):
            total += (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")
    return total


def run_once(args: argparse.Namespace, n: int, db_url: str, tmp: Path, tag: str) -> dict[str, Any]:
    """One launch of ``n`` participants; returns its figures."""
    options = ("--server.agentMaxSessions", str(n + 20), "--server.agentWaitTimeout", "120")
    servers = [AppServer(tmp, db_url, SECRET, options) for _ in range(args.processes)]
    try:
        for server in servers:
            server.start()
        # One warm-up participant per server: the first chat turn of a process imports litellm.
        drive(servers, len(servers), 1, f"{tag}-warm", think=0, ramp=0)
        cpu0 = [s.cpu_seconds() for s in servers]
        db0 = database_cpu_seconds() if args.db == "postgres" else 0.0
        rss0 = [s.rss_mb() for s in servers]
        own0 = time.process_time()
        t0 = time.perf_counter()
        clients = drive(servers, n, args.turns, tag, think=args.think, ramp=args.ramp if n > 1 else 0)
        wall = time.perf_counter() - t0
        cpu = sum(s.cpu_seconds() - c for s, c in zip(servers, cpu0, strict=True))
        db_cpu = database_cpu_seconds() - db0 if args.db == "postgres" else 0.0
        rss = sum(s.rss_mb() - r for s, r in zip(servers, rss0, strict=True))
        own = time.process_time() - own0
    finally:
        for server in servers:
            server.stop()
    found = audit(db_url, clients)
    turns = sum(len(c.turn_seconds) for c in clients)
    shown = [e for c in clients for e in c.errors]
    return {
        "n": n,
        "wall": wall,
        "turns": turns,
        "completed": sum(c.completed for c in clients),
        "errors": shown,
        "notices": {k: sum(c.notices.get(k, 0) for c in clients) for k in NOTICES},
        "turn_seconds": [t for c in clients for t in c.turn_seconds],
        "cpu_per_turn": cpu / max(1, turns),
        "cpu_share": cpu / max(1e-9, wall) / max(1, args.processes),
        "db_cpu_per_turn": db_cpu / max(1, turns),
        "client_cpu": own / max(1e-9, wall),
        "mem_per_participant": rss / max(1, n),
        **found,
    }


def report(label: str, r: dict[str, Any]) -> None:
    """Print one run's figures."""
    ts, lab = r["turn_seconds"], r["lab_times"]
    print(f"\n{label}: {r['n']} participants, {r['turns']} chat turns in {r['wall']:.1f} s; {r['completed']} completed")
    print(f"  lost turns {r['lost']}, duplicated {r['duplicated']}, partial replies {r['partial']}, error replies {r['errored']}")
    print(f"  errors shown to participants: {len(r['errors'])}")
    print("  calm notices seen: " + ", ".join(f"{k} {v}" for k, v in r["notices"].items()))
    for e in r["errors"][:5]:
        print(f"    {e[:200]}")
    if ts:
        print(f"  send → whole reply seen: median {statistics.median(ts) * 1000:.0f} ms, p95 {pct(ts, 95) * 1000:.0f} ms")
        print(
            f"  the lab's own time per turn: median {statistics.median(lab) * 1000:.0f} ms, "
            f"p95 {pct(lab, 95) * 1000:.0f} ms (target p95 ≤ 250 ms)"
        )
    print(
        f"  server CPU per turn {r['cpu_per_turn'] * 1000:.0f} ms (servers busy {r['cpu_share']:.0%} of their cores; "
        f"the clients used {r['client_cpu']:.0%} of a core); memory per participant {r['mem_per_participant']:.2f} MB"
    )
    if r["db_cpu_per_turn"]:
        print(f"  Postgres CPU per turn {r['db_cpu_per_turn'] * 1000:.0f} ms (on the same cores as the servers and clients)")


def prepare(args: argparse.Namespace) -> tuple[str, Path]:
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
    return db_url, tmp


def main() -> None:
    """Parse the flags, run N = 1 then N = ``--participants``, print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--participants", type=int, default=200)
    ap.add_argument("--turns", type=int, default=3)
    ap.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--postgres-url", default="")
    # Two per core: a process's sessions share one interpreter lock, which limits it before
    # the core does (see docs/deployment.md).
    ap.add_argument("--processes", type=int, default=2 * (os.cpu_count() or 1))
    ap.add_argument(
        "--think", type=float, default=20.0, help="mean seconds a participant takes to read a reply and write the next message"
    )
    ap.add_argument("--ramp", type=float, default=30.0, help="seconds over which the participants arrive")
    ap.add_argument("--turns-csv", type=Path, help="write every chat turn of the N-participant run here (when sent, how long)")
    args = ap.parse_args()
    db_url, tmp = prepare(args)
    print(
        f"{args.processes} server process(es) on {args.db}; "
        f"scripted model: {LATENCY} s to the first piece, then {1 / TOKEN_DELAY:.0f}/s; "
        f"participants arrive over {args.ramp:.0f} s and take {args.think:.0f} s (±50 %) to write each message"
    )
    try:
        single = run_once(args, 1, db_url, tmp, "one")
        report("N = 1", single)
        many = run_once(args, args.participants, db_url, tmp, "many")
        report(f"N = {args.participants}", many)
        if args.turns_csv:
            write_turns(args.turns_csv, many["turn_rows"])
        if single["lab_times"] and many["lab_times"]:
            print(
                f"\nratio of p95 lab time, N = {args.participants} to N = 1: "
                f"{pct(many['lab_times'], 95) / max(1e-3, pct(single['lab_times'], 95)):.1f}×"
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
