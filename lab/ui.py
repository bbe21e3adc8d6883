"""Streamlit-side helpers shared by the pages (with ``lab.web.guard``, the only modules that import streamlit)."""

from __future__ import annotations

import html
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import streamlit as st
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from .db import DatabaseUnavailable, reachable, ready_engine
from .render import model_markdown
from .web.paths import LOGOUT_PATH, link


@st.cache_resource(show_spinner=False)
def engine() -> Engine:
    """The database engine, migrated once per server process (see :func:`lab.db.ready_engine`)."""
    return ready_engine()


PAGE_UNAVAILABLE = "The study is temporarily unavailable. Please try again, or refresh the page, in a moment."
"""What a visitor sees when the page cannot reach the database."""
STUDY_BUSY = "The study is busy; please wait a moment… This page tries again by itself."
"""What a participant sees while the database is too busy to let them start (the page retries)."""
BUSY_RETRY_SECONDS = 3.0
"""How long a participant's page waits before it tries again what the busy database refused."""


@contextmanager
def unavailable_notice() -> Iterator[None]:
    """Show a calm notice and end the page run when the database is out of reach inside the block.

    A database down for a few seconds, or SQLite locked past its busy timeout, would
    otherwise show a traceback. "Try again" runs the page again in the same session, so
    what the visitor typed (kept in session state) is still there; a refresh would start
    a new session.
    """
    try:
        with reachable(PAGE_UNAVAILABLE):
            yield
    except DatabaseUnavailable as e:
        show_unavailable(str(e))


def show_unavailable(
    message: str = PAGE_UNAVAILABLE, on_click: Callable[..., None] | None = None, args: tuple[Any, ...] = ()
) -> NoReturn:
    """The calm notice that the database is out of reach, with "Try again"; ends the page run.

    Args:
        message: What the visitor is told.
        on_click: What "Try again" does before the page runs again (the button's own
            action that could not reach the database); by default only the run again.
        args: Its arguments.
    """
    st.warning(message, icon=":material/cloud_off:")
    st.button("Try again", key="database_unavailable_retry", icon=":material/refresh:", on_click=on_click, args=args)
    st.stop()
    raise AssertionError("unreachable")  # st.stop ends the run


@contextmanager
def reading() -> Iterator[Session]:
    """A read-only database session for one page run."""
    with Session(engine(), expire_on_commit=False) as s:
        yield s


@contextmanager
def writing() -> Iterator[Session]:
    """A database transaction that commits on success and rolls back on error."""
    with Session(engine(), expire_on_commit=False) as s, s.begin():
        yield s


def staff_header(visitor: Any) -> None:
    """Who is signed in, with a sign-out link, at the top of a staff page."""
    st.markdown(
        f"<div style='text-align:right;font-size:0.85rem'>Signed in as <b>{html.escape(visitor.username or '')}</b> "
        f"({html.escape(visitor.role or '')}) · {link(LOGOUT_PATH, 'Sign out')}</div>",
        unsafe_allow_html=True,
    )


STUDY_PARAM = "slug"
"""Query parameter keeping a staff page's chosen study, so a reload or a shared address keeps it.

Not ``study``: that one makes a visit a participant's (``lab.navigation.PARTICIPANT_PARAMS``)."""


def remembered_study(slugs: list[str]) -> int:
    """Index in ``slugs`` of the study chosen last: in the address first, then in this session."""
    for remembered in (st.query_params.get(STUDY_PARAM), st.session_state.get("_study_choice")):
        if remembered in slugs:
            return slugs.index(remembered)
    return 0


def remember_study(slug: str) -> None:
    """Keep a chosen study in the address and for the other staff pages of the session."""
    st.session_state["_study_choice"] = slug
    if st.query_params.get(STUDY_PARAM) != slug:
        st.query_params[STUDY_PARAM] = slug


def pick_study(label: str = "Study", *, key: str = "study_slug") -> str | None:
    """A study chooser (newest versions); the choice is kept in the address and shared by the staff pages of a session."""
    from .studies import list_studies

    with reading() as s:
        slugs = [row.slug for row in list_studies(s)]
    if not slugs:
        st.info("No studies yet: upload a spec on the Studies page.")
        return None
    slug = st.selectbox(label, slugs, index=remembered_study(slugs), key=key)
    remember_study(slug)
    return slug


def assigned_study(account_id: int, *, key: str) -> str | None:
    """A chooser of the studies an annotator is assigned to (none shown when there is one); None when there are none."""
    from .annotation import studies_for

    with reading() as s:
        slugs = studies_for(s, account_id)
    if not slugs:
        st.info("No study is assigned to you yet. An experimenter assigns annotators on the Annotation & agreement page.")
        return None
    return st.selectbox("Study", slugs, key=key) if len(slugs) > 1 else slugs[0]


def flash(key: str) -> None:
    """Show and forget a message a callback left in ``st.session_state[key]`` as ``(kind, text)``."""
    message = st.session_state.pop(key, None)
    if message:
        kind, text = message
        {"success": st.success, "error": st.error, "warning": st.warning}.get(kind, st.info)(text)


def stored_text(role: str, text: str | None) -> None:
    """Show a stored turn as the participant page does: model text safe, participant words verbatim.

    Model (``assistant``) text is Markdown that loads nothing (``lab.render.model_markdown``);
    any other text is shown as written, never read as Markdown.

    Args:
        role: The turn's role; only ``assistant`` text is read as Markdown.
        text: What was stored.
    """
    if not text:
        st.caption("(empty)")
    elif role == "assistant":
        st.markdown(model_markdown(text))
    else:
        st.text(text)


# --- the participant's browser ------------------------------------------------------------

BROWSER_ACTIVITY_KEY = "lab_browser_activity"
"""Session-state key holding what the browser snippet last reported."""

_BROWSER_ACTIVITY_JS = """
export default function (component) {
  const lab = window.__labActivity || (window.__labActivity = {
    seq: 0, log: [], draftStart: null, edits: 0, timer: null, installed: false,
  });
  lab.set = component.setStateValue;
  // Reports go out in their own task, never inside another element's event: a report
  // sent within the keypress that submits the chat input makes Streamlit drop the message.
  lab.report = (rec) => setTimeout(() => {
    lab.seq += 1;
    lab.log.push(Object.assign({ seq: lab.seq, at: Date.now() }, rec));
    if (lab.log.length > 30) lab.log.shift();
    lab.set("log", lab.log.slice());
  }, 0);
  if (lab.installed) return;
  lab.installed = true;
  const isChat = (el) => el && el.matches && el.matches('[data-testid="stChatInputTextArea"]');
  const draft = () => lab.report({ kind: "draft", typing_started_at: lab.draftStart, edits: lab.edits });
  const submitted = () => { clearTimeout(lab.timer); lab.draftStart = null; lab.edits = 0; };
  document.addEventListener("input", (e) => {
    if (!isChat(e.target)) return;
    clearTimeout(lab.timer);
    if (!e.target.value) { lab.draftStart = null; lab.edits = 0; return; }
    const first = lab.draftStart === null;
    if (first) lab.draftStart = Date.now();
    lab.edits += 1;
    if (first) draft(); else lab.timer = setTimeout(draft, 800);
  }, true);
  document.addEventListener("keydown", (e) => {
    if (isChat(e.target) && e.key === "Enter" && !e.shiftKey && !e.isComposing) submitted();
  }, true);
  document.addEventListener("click", (e) => {
    if (e.target && e.target.closest && e.target.closest('[data-testid="stChatInputSubmitButton"]')) submitted();
  }, true);
  document.addEventListener("visibilitychange", () => {
    lab.report({ kind: document.visibilityState === "hidden" ? "hidden" : "visible" });
  });
}
"""


def browser_activity() -> Any:
    """Mount the invisible snippet that reports typing and page visibility from the browser.

    Call it inside an ``st.fragment``: each report then reruns only the fragment, which
    Streamlit queues behind a running script instead of interrupting it (a reply keeps
    streaming while the participant switches tabs). The reports (see
    ``lab.flow.client_records``) are also in ``st.session_state[BROWSER_ACTIVITY_KEY]``.
    Typing is reported when a draft starts and after each pause of 0.8 s, so the edit
    count of a message covers its draft up to the last pause.

    Returns:
        The snippet's state (a mapping with ``log``, once the browser has reported).
    """
    component = st.components.v2.component("lab_browser_activity", js=_BROWSER_ACTIVITY_JS)
    return component(key=BROWSER_ACTIVITY_KEY, on_log_change=lambda: None, height=0)


def question_input(question: Any, *, key: str) -> Any:
    """The input for one survey question (``lab.spec.QuestionSpec``); nothing is preselected.

    Returns:
        The answer as ``lab.flow.check_answers`` takes it, or None while unanswered.
    """
    label = question.text if question.required else f"{question.text} (optional)"
    if question.type == "likert":
        ends = question.options if len(question.options) == 2 else None

        def point(v: int) -> str:
            if ends and v == 1:
                return f"1 · {ends[0]}"
            if ends and v == question.scale:
                return f"{v} · {ends[1]}"
            return str(v)

        return st.radio(label, list(range(1, question.scale + 1)), index=None, horizontal=True, format_func=point, key=key)
    if question.type == "yesno":
        choice = st.radio(label, ["Yes", "No"], index=None, horizontal=True, key=key)
        return None if choice is None else choice.lower()
    if question.type == "choice":
        return st.radio(label, question.options, index=None, key=key)
    if question.type == "number":
        return st.number_input(label, value=None, key=key)
    return st.text_area(label, key=key, max_chars=4000)
