"""Builds a study with branches whose replies are known in advance, for the preference tests, page tests and browser test.

The study's model asks for the first number, then the second, then answers 5. Branches come
from two fixed models: one asks for the first number whatever the state, one guesses 4. Two
items, one conversation each, three points each: at the first point the asking branch says
what the original said (one reply), so each conversation offers 1 + 3 + 3 = 7 comparisons.
Model keys are unusual words, so a test can look for them in what a page shows.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
SLUG = "prefs"
ASK = "What is the first number?"
SECOND = "What is the second number?"
GUESS = "The answer is 4."
ANSWER = "The answer is 5."
MODELS: dict[str, Any] = {
    "quokkabot": {"model": "lab/scripted", "params": {"script": "sequence", "replies": [ASK, SECOND, ANSWER]}},
    "askerzeta": {"model": "lab/scripted", "params": {"script": "fixed", "reply": ASK}},
    "guesserkappa": {"model": "lab/scripted", "params": {"script": "fixed", "reply": GUESS}},
}
MODEL_WORDS = ("quokkabot", "askerzeta", "guesserkappa", "lab/scripted", "scripted", "cond-marmot")
"""Model keys, model strings and the condition key: never on an annotator's screen."""
ITEMS = [
    {
        "id": "add",
        "kind": "sharded",
        "title": "Adding numbers",
        "shards": [
            {"id": 1, "text": "Add two numbers."},
            {"id": 2, "text": "The first is 2."},
            {"id": 3, "text": "The second is 3."},
        ],
        "answer": {"type": "number", "value": "5"},
    },
    {
        "id": "add-again",
        "kind": "sharded",
        "title": "Adding numbers again",
        "shards": [
            {"id": 1, "text": "Add two numbers."},
            {"id": 2, "text": "The first is 4."},
            {"id": 3, "text": "The second is 1."},
        ],
        "answer": {"type": "number", "value": "5"},
    },
]
COMPARISONS = 14
"""Comparisons the study offers once simulated and branched."""


def spec() -> str:
    """The study's spec (YAML)."""
    return yaml.safe_dump(
        {
            "slug": SLUG,
            "title": "Preference study",
            "consent": "ok",
            "instructions": "chat",
            "models": MODELS,
            "conditions": {"cond-marmot": {"model": "quokkabot", "reveal": "ON_REQUEST"}},
            "items": ITEMS,
        },
        sort_keys=False,
    )


COMMANDS = (
    ("simulate", SLUG, "--repeats", "1"),
    ("branch", SLUG, "--k", "2", "--models", "askerzeta", "guesserkappa", "--rollouts", "0"),
)


@contextmanager
def _database(url: str) -> Iterator[None]:
    before = os.environ.get("DATABASE_URL")
    os.environ["DATABASE_URL"] = url
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("DATABASE_URL", None)
        else:
            os.environ["DATABASE_URL"] = before


def build(url: str, folder: Path) -> None:
    """Load, simulate and branch the study in the database at ``url`` (in this process)."""
    from lab.cli import main

    path = folder / f"{SLUG}.yaml"
    path.write_text(spec())
    with _database(url):
        for args in (("study", "load", str(path)), *COMMANDS):
            assert main(list(args)) == 0, args


def build_in_subprocess(env: dict[str, str], folder: Path) -> None:
    """The same in child processes (``python -m lab``), for a test whose thread runs another event loop."""
    path = folder / f"{SLUG}.yaml"
    path.write_text(spec())
    for args in (("study", "load", str(path)), *COMMANDS):
        subprocess.run([sys.executable, "-m", "lab", *args], cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)
