"""``python -m lab``: commands work end to end; errors are one line and a non-zero exit."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from lab.cli import main
from lab.db import get_engine
from lab.schema import ChatSession, Study, Turn

ROOT = Path(__file__).resolve().parent.parent


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_validate_demo(capsys: pytest.CaptureFixture[str], scripted_demo_path: Path) -> None:
    code, out, _ = run(capsys, "study", "validate", str(scripted_demo_path))
    assert code == 0 and "ok — study 'demo'" in out and "13 items" in out


def test_validate_broken_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("slug: x\ntitle: [unclosed\n")
    code, out, err = run(capsys, "study", "validate", str(bad))
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"error: {bad}:") and "YAML syntax error" in err
    assert "Traceback" not in err


def test_no_traceback_in_subprocess(tmp_path: Path) -> None:
    env = dict(os.environ, DATABASE_URL=f"sqlite:///{tmp_path}/x.db", LAB_DATA_DIR=str(tmp_path))
    r = subprocess.run(
        [sys.executable, "-m", "lab", "study", "validate", str(tmp_path / "missing.yaml")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1 and r.stderr.strip() == f"error: {tmp_path / 'missing.yaml'}: file not found"


@pytest.mark.usefixtures("scripted_demo_init")
def test_init_load_open_list(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "init")
    assert code == 0 and "loaded and opened the demo study: take part at http://localhost:8501/?study=demo" in out
    assert "/auth/setup?token=" in out  # no staff account yet
    code, out, _ = run(capsys, "init")
    assert "demo" not in out  # only into an empty database
    code, out, _ = run(capsys, "study", "pause", "demo")
    assert code == 0 and "is paused" in out
    code, out, _ = run(capsys, "study", "open", "demo")
    assert code == 0 and "is open" in out
    code, out, _ = run(capsys, "study", "list")
    assert "demo" in out and "open" in out
    code, _, err = run(capsys, "study", "open", "nosuch")
    assert code == 1 and err == "error: no study with slug 'nosuch': `python -m lab study list` lists the studies\n"


def test_study_load_versions(capsys: pytest.CaptureFixture[str], scripted_demo_path: Path, tmp_path: Path) -> None:
    run(capsys, "migrate")
    assert "created" in run(capsys, "study", "load", str(scripted_demo_path))[1]
    assert "unchanged" in run(capsys, "study", "load", str(scripted_demo_path))[1]
    changed = tmp_path / "demo.yaml"
    changed.write_text(scripted_demo_path.read_text().replace("turn_limit: 10", "turn_limit: 8"))
    (tmp_path / "items").mkdir()
    (tmp_path / "items" / "demo.jsonl").write_text((scripted_demo_path.parent / "items" / "demo.jsonl").read_text())
    assert "replaced" in run(capsys, "study", "load", str(changed))[1]  # no data yet: updated in place
    with Session(get_engine()) as s:
        assert len(s.scalars(select(Study)).all()) == 1


def test_user_add(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    run(capsys, "migrate")
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    monkeypatch.delenv("LAB_PASSWORD", raising=False)
    code, _, err = run(capsys, "user", "add", "ada", "--role", "experimenter")
    assert code == 1 and "LAB_PASSWORD" in err
    monkeypatch.setenv("LAB_PASSWORD", "correct horse battery")
    code, out, _ = run(capsys, "user", "add", "ada", "--role", "experimenter")
    assert code == 0 and "'ada' (experimenter) created" in out
    code, _, err = run(capsys, "user", "add", "ada", "--role", "annotator")
    assert code == 1 and "taken" in err


def test_import_fixture(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    src = ROOT / "tests" / "fixtures" / "datasets" / "falseqa" / "sample.csv"
    code, out, err = run(capsys, "import", "falseqa", str(src), "--out", str(tmp_path / "f.jsonl"))
    assert code == 0 and "wrote 4 items" in out and "control 2, loaded 2" in out
    assert err.count("skipped record") == 2 and "skipped record 4: label:" in err  # malformed records named on stderr
    assert len((tmp_path / "f.jsonl").read_text().splitlines()) == 4


@pytest.mark.parametrize(
    ("dataset", "relative", "count"),
    [
        ("lost-in-conversation", "lost_in_conversation/thirdparty_sample_5_per_task.json", 30),
        ("lost-in-conversation", "lost_in_conversation/sharded_translation.json", 30),
        ("falseqa", "falseqa/test.csv", 1374),
        ("clamber", "clamber/clamber_benchmark.jsonl", 3202),
    ],
)
def test_import_shared_datasets(
    capsys: pytest.CaptureFixture[str], shared_datasets: Path, tmp_path: Path, dataset: str, relative: str, count: int
) -> None:
    out_file = tmp_path / "items.jsonl"
    code, out, _ = run(capsys, "import", dataset, str(shared_datasets / relative), "--out", str(out_file))
    assert code == 0 and f"wrote {count} items" in out
    assert len(out_file.read_text().splitlines()) == count


def test_chat_in_terminal(
    capsys: pytest.CaptureFixture[str], write_study: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = write_study(
        "t",
        models={"bot": {"model": "lab/scripted", "params": {"script": "echo"}}},
        conditions={"sharded": {"model": "bot", "reveal": "SHARDED"}},
        items=[
            {
                "id": "a",
                "kind": "sharded",
                "shards": [{"id": 1, "text": "Add two numbers."}, {"id": 2, "text": "The first is 2."}],
            }
        ],
    )
    run(capsys, "migrate")
    run(capsys, "study", "load", str(spec))
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n/2 it's two\n/cards\n/done\n"))
    code, out, _ = run(capsys, "chat", "t", "--condition", "sharded")
    assert code == 0
    assert "[1]" in out and "assistant> You said: Add two numbers." in out and "You said: it's two" in out
    with Session(get_engine()) as s:
        chat = s.scalars(select(ChatSession)).one()
        kind, status = chat.participant.kind, chat.participant.status
        turns = s.scalars(select(Turn).order_by(Turn.index)).all()
    assert chat.outcome == "answered" and kind == "pilot" and status == "completed"
    assert [(t.role, t.shards) for t in turns] == [("user", [1]), ("assistant", None), ("user", [2]), ("assistant", None)]
    assert all(t.latency_ms is not None for t in turns if t.role == "assistant")


# --- The README's command lines, in order, on a fresh database ------------------------------------


def readme_command_lines() -> list[str]:
    """Every ``python -m lab`` line of the README's fenced blocks, in the order a reader meets them."""
    lines: list[str] = []
    fenced = False
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
            continue
        if fenced and line.startswith("python -m lab"):
            lines.append(line)
    return lines


STRONG_PASSWORD = "violet-harbour-quietly-7-lanterns"
"""Passes the account password rules (zxcvbn 3 of 4)."""

RUN_WITH_SCRIPTED_DEMO = (
    "import pathlib, sys\n"
    "import lab.cli\n"
    "lab.cli.DEMO_SPEC = pathlib.Path('studies/demo.yaml').resolve()\n"
    "sys.exit(lab.cli.entry())\n"
)
"""``python -m lab`` with one change: ``init`` loads the working folder's demo.

The working folder holds the demo as shipped with the scripted model in place of the
embedded one (see ``scripted_demo_path``), at the path the README names
(``studies/demo.yaml``), so every line runs as written, offline and fast: ``init``,
``study load``, ``chat`` and ``simulate`` talk to ``lab/scripted``.
"""

EXPECTED_REFUSALS = {
    "python -m lab judge demo --model gpt-4o-mini": ("OPENAI_API_KEY", "an LLM judge needs its provider's key"),
    "python -m lab withdraw 5f0c0ffee0000000000000aa": ("no participant", "the README's id is an example"),
    "python -m lab train demo --method dpo": (
        "nothing to train on",
        "the scripted model gives every branch the same reply, so no pair differs under a rule",
    ),
}
"""README lines that must refuse here, with what the refusal names and why the README implies it."""

STDIN = {"python -m lab chat": "\n/done\n"}
"""What a person types into an interactive command: card 1 as written, then /done."""

EMPTY_DATABASE = "python -m lab import bundle"
"""The README imports a bundle "into an empty database": that line gets a database of its own."""

SCRIPTED_MODEL = "lab/scripted"
EMBEDDED = "local/smollm2-135m"
"""The embedded model, which a line naming it runs with the scripted model instead (as ``init`` does)."""

TRAIN = "python -m lab train"
"""Training lines train a tiny model of the embedded model's architecture for one step instead
(tests/tiny_model.py): the 135 M model takes minutes a step on two cores; tests/train checks the rest."""

TUNED = "local/models/"
"""Lines that use a tuned model: they need the training stack, as the training lines do.

A simulation with the tiny tuned model runs one repeat instead of the README's three: its
random weights never end a reply before ``max_tokens``, so every reply is the longest there is.
"""


def readme_line_args(line: str, tiny: Path | None) -> list[str] | None:
    """The arguments a README line runs with here, or None when it cannot run on this machine."""
    import shlex

    args = shlex.split(line.replace(EMBEDDED, SCRIPTED_MODEL), comments=True)[3:]
    if line.startswith(TRAIN):
        return None if tiny is None else [*args, "--base", str(tiny), "--max-steps", "1", "--max-length", "128"]
    if TUNED in line:
        if tiny is None:
            return None
        if line.startswith("python -m lab simulate"):
            return [*args, "--repeats", "1"]  # the last of a repeated option counts
    return args


@pytest.mark.long
@pytest.mark.timeout(1500)  # about 4 min alone; several times that beside three other workers on two cores
def test_readme_command_lines_run_in_order(tmp_path: Path, scripted_demo_path: Path) -> None:
    """Every README command line, in order, on a fresh database, exits as the README implies."""
    import shutil

    from lab.train import missing_packages
    from tests.tiny_model import make_tiny_model

    lines = readme_command_lines()
    assert lines[0].startswith("python -m lab init") and len(lines) >= 20
    work = tmp_path / "work"
    (work / "studies" / "items").mkdir(parents=True)
    shutil.copy(scripted_demo_path, work / "studies" / "demo.yaml")
    shutil.copy(scripted_demo_path.parent / "items" / "demo.jsonl", work / "studies" / "items" / "demo.jsonl")
    shutil.copy(ROOT / "tests" / "fixtures" / "datasets" / "falseqa" / "sample.csv", work / "test.csv")
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.update(
        LAB_DATA_DIR=str(tmp_path / "data"),
        DATABASE_URL=f"sqlite:///{tmp_path / 'data' / 'lab.db'}",
        LAB_ENV_FILE=os.devnull,
        LAB_PASSWORD=STRONG_PASSWORD,
        PYTHONPATH=str(ROOT),
    )
    tiny = None if missing_packages() else make_tiny_model(tmp_path / "tiny")
    results = []
    for line in ["python -m lab --help", *lines]:
        args = readme_line_args(line, tiny)
        if args is None:  # without the training stack (`make train-setup`), nothing can be trained or served
            continue
        run_env = env
        if line.startswith(EMPTY_DATABASE):
            run_env = dict(env, DATABASE_URL=f"sqlite:///{tmp_path / 'second' / 'lab.db'}")
        stdin = next((text for start, text in STDIN.items() if line.startswith(start)), "")
        started = time.monotonic()
        r = subprocess.run(
            [sys.executable, "-c", RUN_WITH_SCRIPTED_DEMO, *args],
            cwd=work,
            env=run_env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=600,
        )
        print(f"{time.monotonic() - started:6.1f} s  {line}")
        refusal = next((v for start, v in EXPECTED_REFUSALS.items() if line.startswith(start)), None)
        assert "Traceback" not in r.stderr, f"{line}\n{r.stderr}"
        if refusal is None:
            assert r.returncode == 0, f"`{line}` exited {r.returncode}: {r.stderr.strip()[-500:]}"
        else:
            named, why = refusal
            assert r.returncode == 1 and named in r.stderr, f"`{line}` should refuse ({why}): {r.returncode} {r.stderr}"
        results.append((line, r))
    out = {line.split("#")[0].strip(): r.stdout for line, r in results}
    assert "already open" in out["python -m lab study open demo"]  # init opened it
    assert "wrote 4 items" in out["python -m lab import falseqa test.csv --out studies/items/falseqa.jsonl"]
    assert "falseqa-0001-loaded" in (work / "studies" / "items" / "falseqa.jsonl").read_text()
    assert (work / "links.csv").exists() and (work / "demo-bundle" / "private" / "prolific_ids.csv").exists()


# --- Each command-line problem a first reading of the README met --------------------------------


def test_abbreviated_options_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    """`--repeat 3` once ran the full grid as if it were `--repeats 3`; no parser accepts a prefix."""
    from lab.cli import build_parser

    for words in (["simulate", "demo", "--repeat", "3"], ["study", "list", "--al"], ["export", "demo", "--ou", "x"]):
        with pytest.raises(SystemExit) as stop:
            build_parser().parse_args(words)
        assert stop.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err


def test_init_into_a_closed_pipe_still_sets_up(tmp_path: Path) -> None:
    """`init | head -1` reads one line; init must still finish (and exit 0) rather than die on a broken pipe."""
    env = dict(os.environ, DATABASE_URL=f"sqlite:///{tmp_path}/x.db", LAB_DATA_DIR=str(tmp_path), LAB_ENV_FILE=os.devnull)
    r = subprocess.run(
        f"{sys.executable} -m lab init | head -1; echo status=${{PIPESTATUS[0]}}",
        shell=True,
        executable="/bin/bash",
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert r.stdout.splitlines()[0].startswith("loaded") and "status=0" in r.stdout
    assert "BrokenPipe" not in r.stderr and "Exception ignored" not in r.stderr
    with Session(get_engine(f"sqlite:///{tmp_path}/x.db")) as s:
        assert s.scalars(select(Study.status)).all() == ["open"]


@pytest.mark.usefixtures("scripted_demo_init")
def test_study_open_after_init_and_close_asks_first(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    run(capsys, "init")
    code, out, _ = run(capsys, "study", "open", "demo")
    assert code == 0 and out == "study 'demo' version 1 is already open\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    code, _, err = run(capsys, "study", "close", "demo")
    assert code == 1 and "cannot be reopened" in err and "pass --yes" in err
    code, out, _ = run(capsys, "study", "close", "demo", "--yes")
    assert code == 0 and "is closed" in out


def test_database_without_tables_says_run_init(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "study", "list")
    assert code == 1 and "has no lab tables yet" in err and "run `python -m lab init`" in err
    assert "database error" not in err


@pytest.mark.usefixtures("scripted_demo_init")
def test_codebook_shows_the_shortcut_keys(capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "init")
    code, out, _ = run(capsys, "codebook", "--layer", "G")
    assert code == 0 and "key  code" in out
    assert any(line.split()[:2] == ["a", "ACK"] for line in out.splitlines())
    code, _, err = run(capsys, "codebook", "--layer", "G", "--study", "nosuch")
    assert code == 1 and "no study with slug 'nosuch'" in err


@pytest.mark.usefixtures("scripted_demo_init")
def test_missing_keys_are_refused_up_front(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A judge or a condition that needs a key nobody set exits non-zero naming the variable, before any work."""
    run(capsys, "init")
    code, out, err = run(capsys, "judge", "demo", "--model", "gpt-4o-mini")
    assert code == 1 and "OPENAI_API_KEY" in err and "labels written" not in out
    code, out, err = run(capsys, "judge", "evaluate", "--model", "gpt-4o-mini", "--limit", "1")
    assert code == 1 and "OPENAI_API_KEY" in err and "met" not in out
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n/done\n"))
    code, _, err = run(capsys, "chat", "demo", "--condition", "sharded-gpt")
    assert code == 1 and "OPENAI_API_KEY" in err and "validate leaves it out" in err
    with Session(get_engine()) as s:
        assert s.scalars(select(ChatSession)).all() == []


@pytest.mark.usefixtures("scripted_demo_init")
def test_unknown_names_are_refused_with_close_ones(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A mistyped name must not look like a study without data."""
    run(capsys, "init")
    code, _, err = run(capsys, "metrics", "demo", "--measures", "premature", "--draws", "0")
    assert code == 1 and err == "error: unknown measure 'premature': did you mean 'premature_rate'?\n"
    code, _, err = run(capsys, "metrics", "demo", "--conditions", "shardd", "--draws", "0")
    assert code == 1 and "unknown condition 'shardd': did you mean 'sharded'" in err
    code, _, err = run(capsys, "export", "demo", "--out", str(tmp_path / "x"), "--format", "sft", "--condition", "shardd")
    assert code == 1 and "unknown condition 'shardd'" in err and not (tmp_path / "x").exists()
    code, _, err = run(capsys, "export", "demo", "--out", str(tmp_path / "x"), "--format", "sft", "--outcome", "answerd")
    assert code == 1 and "did you mean 'answered'" in err
    code, _, err = run(capsys, "metrics", "dmeo", "--draws", "0")
    assert code == 1 and err == "error: no study with slug 'dmeo': did you mean 'demo'?\n"
    code, _, err = run(capsys, "chat", "demo", "--condition", "shardd")
    assert code == 1 and "did you mean 'sharded'" in err
    code, _, err = run(capsys, "simulate", "demo", "--repeats", "1", "--conditions", "shardd", "--dry-run")
    assert code == 1 and "did you mean 'sharded'" in err


def test_label_source_names_the_version_of_the_labels_used(capsys: pytest.CaptureFixture[str]) -> None:
    """After the rule judge labels layer G under its own version, P figures still name the P rules' version."""
    from lab import synth
    from lab.labels import add_label

    run(capsys, "migrate")
    engine = get_engine()
    synth.make_study(engine, "src", 40, exchanges=2, items_per_kind=4)
    with Session(engine) as s, s.begin():
        turn = s.scalars(select(Turn).where(Turn.role == "assistant")).first()
        assert turn is not None
        add_label(s, turn.id, "auto:rules", "G", "ACK", meta={"version": "grounding-rules-1"})
    code, out, _ = run(
        capsys,
        "metrics",
        "src",
        "--measures",
        "rejection_rate,grounding_rate",
        "--source",
        "auto",
        "--format",
        "csv",
        "--draws",
        "0",
    )
    assert code == 0
    import csv

    sources = {(r["measure"], r["label_source"]) for r in csv.DictReader(io.StringIO(out))}
    assert ("rejection_rate", "auto:rules@rules-1") in sources
    assert ("grounding_rate", "auto:rules@grounding-rules-1") in sources
    assert not any(m == "rejection_rate" and "grounding" in src for m, src in sources)


def test_measures_lists_every_measure_the_figures_hold(capsys: pytest.CaptureFixture[str]) -> None:
    """`--measures` refuses names outside MEASURES, so MEASURES must hold every measure a figure table can have."""
    from lab import synth
    from lab.metrics import MEASURES

    run(capsys, "migrate")
    synth.make_study(get_engine(), "all", 300, exchanges=3, items_per_kind=4)
    code, out, _ = run(capsys, "metrics", "all", "--format", "csv", "--draws", "0")
    assert code == 0
    assert {line.split(",")[0] for line in out.splitlines()[1:] if line} == set(MEASURES)


def test_mediator_follows_the_model_that_replaces_its_condition(
    capsys: pytest.CaptureFixture[str], demo_spec_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`simulate demo --models lab/scripted` calls no embedded model, not even as the mediator, and the dry run says so."""
    from lab.llm import _local

    def no_embedded_model(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the embedded model was called")

    monkeypatch.setattr(_local, "Generation", no_embedded_model)
    run(capsys, "migrate")
    run(capsys, "study", "load", str(demo_spec_path))
    args = ("simulate", "demo", "--repeats", "1", "--models", "lab/scripted", "--conditions", "sharded-mediator")
    code, _, err = run(capsys, *args, "--dry-run")
    assert code == 0 and "(assistant lab/scripted, mediator lab/scripted)" in err and "smollm2" not in err
    code, _, err = run(capsys, *args)
    assert code == 0, err
    with Session(get_engine()) as s:
        roles = s.execute(select(Turn.role, Turn.model).where(Turn.model.is_not(None))).all()
    assert {role for role, _ in roles} >= {"assistant", "mediator"}
    assert {model for _, model in roles} == {"lab/scripted"}


def test_score_names_conversations_on_items_without_gold(
    capsys: pytest.CaptureFixture[str], write_study: Callable[..., Path]
) -> None:
    spec = write_study(
        "g",
        conditions={"full": {"model": "bot", "reveal": "FULL"}},
        items=[
            {
                "id": "add",
                "kind": "sharded",
                "shards": [{"id": 1, "text": "Add 2 and 3."}],
                "answer": {"type": "number", "value": "5"},
            },
            {"id": "chat", "kind": "open", "prompt": "Tell me about your day."},
        ],
    )
    run(capsys, "migrate")
    run(capsys, "study", "load", str(spec))
    assert run(capsys, "simulate", "g", "--repeats", "1")[0] == 0
    code, out, _ = run(capsys, "score", "g")
    assert code == 0 and "left out: 1 conversation(s) on items with nothing to score against" in out


def test_several_processes_print_no_litellm_notices(tmp_path: Path, scripted_demo_path: Path) -> None:
    """Worker processes run event loops one after another; litellm's notice about it is not for the person running."""
    env = dict(
        os.environ,
        DATABASE_URL=f"sqlite:///{tmp_path}/p.db",
        LAB_DATA_DIR=str(tmp_path),
        LAB_ENV_FILE=os.devnull,
        PYTHONPATH=str(ROOT),
    )
    for words in (
        ["migrate"],
        ["study", "load", str(scripted_demo_path)],
        ["simulate", "demo", "--repeats", "2", "--conditions", "full", "--processes", "2"],
    ):
        r = subprocess.run([sys.executable, "-m", "lab", *words], cwd=tmp_path, env=env, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    assert "LiteLLM" not in r.stderr and "event loop changed" not in r.stderr
