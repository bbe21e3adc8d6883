"""The participant's page: consent, instructions, a chat per item, short questions, the code.

Who is visiting and where they are come from the link and the database on every run
(``lab.flow``); this page only draws the current step. Model text goes through
``lab.render.model_markdown``; participant and card text is shown with ``st.text``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import streamlit as st

from lab import flow, render, ui
from lab.db import DatabaseUnavailable, nothing_written, reachable
from lab.dialogue import Conversation, ConversationOver, TurnView
from lab.generation import GENERATIONS, Generation
from lab.reveal import MessageRejected, clean_message
from lab.ui import (
    BROWSER_ACTIVITY_KEY,
    PAGE_UNAVAILABLE,
    browser_activity,
    engine,
    question_input,
    show_unavailable,
    unavailable_notice,
)

with unavailable_notice():
    ENGINE = engine()
NOTICE = "participant_notice"
# Set by a button's callback that could not reach the database: the next run shows the calm
# notice, whose "Try again" does what the button asked (message, callback, its arguments).
UNAVAILABLE = "participant_unavailable"
UNSENT = "participant_unsent"
# Shortest time between two draws of a reply in progress (about seven a second). A comment,
# not a docstring: Streamlit's magic would write a bare string on the page.
DRAW_SECONDS = 0.15
MODEL_FAILED = "The assistant could not reply just now. Your message is saved; please try again."
GUIDE = {
    "whole": "Your task is on the card. Tell the assistant what you need **in your own words** "
    "(or put the card in your message as it is).",
    "question": "Ask the assistant the question on the card. You can send it as it is or put it **in your own words**.",
    "pieces": "Your task comes as cards. Start with card 1. After that, each message may share "
    "**at most one new card**: tick which one, and write it **in your own words**.",
    "on_request": "Start with card 1. Keep the other cards to yourself: open one only when the "
    "assistant asks for what it says. Write **in your own words**.",
}
CARD_STATE = {
    "start": "start here",
    "shared": "shared ✓",
    "partly": "partly shared",
    "available": "not shared yet",
    "locked": "share after your first message",
    "held": "share only if the assistant asks",
    "asked": "the assistant asked for this",
}


def not_valid() -> None:
    """The plain page for any link that leads nowhere; nothing else is shown."""
    st.title(flow.LINK_NOT_VALID)
    st.write("Please check that you opened the whole link you were given.")
    st.stop()


def time_ran_out(contact: str | None) -> None:
    """The page for a participant whose time ran out: what happened and whom to contact."""
    st.title(flow.TIME_RAN_OUT)
    st.write("The time this study allows for taking part has passed, so this link no longer opens the study.")
    if contact:
        st.write("If you have questions, or think this is a mistake, please contact:")
        st.text(contact)
    else:
        st.write(
            "If you have questions, please contact the researchers through the site that sent you here "
            "(for example, Prolific's messages)."
        )
    st.stop()


def chat_key(session_id: int) -> str:
    """Session-state key of a conversation's message box."""
    return f"message_{session_id}"


@dataclass(frozen=True)
class Unsent:
    """A message the database could not take, kept until its box shows it again.

    Kept apart from the box's own state: a page run that cannot reach the database does
    not draw the chat, and Streamlit forgets the state of a widget a run did not draw.
    """

    session_id: int
    text: str | None
    pick_key: str
    card: int | None
    sent_before: int
    """How many messages the participant had sent: tells whether it was stored after all."""


def give_back(unsent: Unsent) -> None:
    """Put an unsent message, and the card it shares, back where the participant left them."""
    st.session_state[chat_key(unsent.session_id)] = unsent.text
    if unsent.card is not None:
        st.session_state[unsent.pick_key] = unsent.card


# --- callbacks (they run before the page is drawn, so they may refill the message box) ----


def on_send(conv: Conversation | int, pick_key: str, sent_before: int) -> None:
    """Commit the message before anything is drawn; a refused one goes back into the box.

    ``conv`` is the conversation as the page run that drew the box read it (its turns are
    read again before sending), or only its id. ``sent_before`` is how many messages the
    page showed as sent: a message the database seemed to refuse is given back only if it
    was not stored after all.
    """
    session_id = conv if isinstance(conv, int) else conv.session_id
    text = st.session_state.get(chat_key(session_id))
    card = st.session_state.get(pick_key) or None
    draft = flow.latest_draft(st.session_state.get(BROWSER_ACTIVITY_KEY), st.session_state.get("draft_seq", 0))
    try:
        if isinstance(conv, int):
            flow.send_to(ENGINE, session_id, text, card, flow.client_timing(draft))
        else:
            flow.send_fresh(conv, text, card, flow.client_timing(draft))
    except DatabaseUnavailable as e:
        st.session_state[NOTICE] = str(e)
        st.session_state[UNSENT] = Unsent(session_id, text, pick_key, card, sent_before)
        return
    except MessageRejected as e:
        st.session_state[NOTICE] = str(e)
        if text and text.strip():
            st.session_state[chat_key(session_id)] = clean_message(text, len(text) + 1)
        return
    except ConversationOver as e:
        st.session_state[NOTICE] = str(e)
        return
    st.session_state.pop(UNSENT, None)
    if draft is not None:
        st.session_state["draft_seq"] = draft.seq


def on_paste(session_id: int, text: str, pick_key: str, card: int | None) -> None:
    """Put a card's text in the message box and tick the card."""
    st.session_state[chat_key(session_id)] = text
    if card is not None:
        st.session_state[pick_key] = card


def on_stop(conv: Conversation) -> None:
    """Cut the reply in progress on purpose, wait until what arrived is stored, and log the Stop.

    When the database is out of reach the next run shows the calm notice and starts no
    reply (what the participant wrote is stored; "Try again" goes on from there).
    """
    try:
        flow.stop_reply(conv, PAGE_UNAVAILABLE)
    except DatabaseUnavailable as e:
        st.session_state[UNAVAILABLE] = (str(e), None, ())


def on_retry(conv: Conversation) -> None:
    """Ask for the failed reply again on the next run (not while the database is out of reach: the calm notice then)."""
    try:
        with reachable(PAGE_UNAVAILABLE):
            conv.log_event("retry")
    except DatabaseUnavailable as e:
        st.session_state[UNAVAILABLE] = (str(e), on_retry, (conv,))  # the notice's "Try again" asks again
        return
    st.session_state[f"retry_{conv.session_id}"] = True


# --- steps ---------------------------------------------------------------------------------


@st.fragment
def browser_reports(f: flow.Flow, session_id: int | None) -> None:
    """Page hidden / shown reports from the browser; typing reports are read when sending."""
    state = browser_activity()
    records = flow.client_records(state, st.session_state.get("visibility_seq", 0))
    try:
        with reachable("page reports not stored"):
            f.record_visibility(records, session_id)
    except DatabaseUnavailable:
        return  # not marked as seen: the next report sends these again
    if records:
        st.session_state["visibility_seq"] = records[-1].seq


def when_free(key: str, pressed: bool, action: Callable[[], object]) -> None:
    """Do what a button asked, waiting while the study is busy; then run the page again.

    A database too busy to take the write (SQLite locked past its busy timeout, no pooled
    connection free) does not show an error: the participant is told to wait and the page
    tries again by itself every few seconds, until it goes through.

    Args:
        key: Session-state key remembering that the action is still to do.
        pressed: The button was pressed in this run.
        action: The write.
    """
    if not (pressed or st.session_state.pop(key, False)):
        return
    try:
        with reachable(ui.STUDY_BUSY):
            action()
    except DatabaseUnavailable as e:
        st.session_state[key] = True
        st.info(str(e), icon=":material/hourglass_top:")
        time.sleep(ui.BUSY_RETRY_SECONDS)
    st.rerun()


def consent_step(f: flow.Flow) -> None:
    """The consent text with agree and decline."""
    st.title("Before you start")
    st.markdown(render.model_markdown(f.consent_text))
    agree, decline = st.columns(2)
    when_free("agreeing", agree.button("I agree to take part", type="primary", width="stretch"), lambda: f.consent(True))
    when_free("declining", decline.button("I do not agree", width="stretch"), lambda: f.consent(False))


def instructions_step(f: flow.Flow) -> None:
    """The study's instructions and a start button."""
    st.title("How this works")
    st.markdown(render.model_markdown(f.instructions))
    st.info("You will talk with an AI assistant. Please write in your own words, as you would to a person.")
    when_free("starting", st.button("Start", type="primary"), f.begin)


def show_cards(conv: Conversation, pick_key: str, active: bool) -> None:
    """The task cards, each with its state and a paste button when it may be shared.

    They are drawn in the page's first column: beside the chat on a wide screen, above it
    on a phone (Streamlit stacks columns on narrow screens), never in a collapsed sidebar.
    """
    kind = flow.presentation(conv)
    choices = flow.card_choices(conv)
    st.subheader("Your question" if kind == "question" else "Your task")
    for card in flow.cards(conv):
        with st.container(border=True):
            title = "Card" if card.id == 0 else f"Card {card.id}"
            st.markdown(f"**{title}** · {CARD_STATE[card.state]}")
            st.text(card.text)
            if active and flow.offered(card, choices):
                st.button(
                    "Put in my message",
                    key=f"paste_{conv.session_id}_{card.id}",
                    on_click=on_paste,
                    args=(conv.session_id, card.text, pick_key, card.id if card.id in choices else None),
                    icon=":material/content_paste:",
                )


def show_turn(conv: Conversation, turn: TurnView) -> None:
    """One message: participant text verbatim, model text as safe Markdown."""
    if turn.role == "user":
        with st.chat_message("user"):
            st.text(turn.content)
            if turn.source == "lab":
                st.caption("Sent by the study to sum up your cards.")
            elif turn.shards and flow.presentation(conv) in ("pieces", "on_request"):
                st.caption("Shares card " + ", ".join(str(i) for i in turn.shards))
        return
    with st.chat_message("assistant"):
        if turn.content:
            st.markdown(render.model_markdown(turn.content))
        if turn.error is not None:
            st.warning(MODEL_FAILED)
            st.button("Try again", key=f"retry_button_{turn.id}", on_click=on_retry, args=(conv,), icon=":material/refresh:")
        elif turn.partial:
            st.caption("This reply was cut off.")


def live_reply(conv: Conversation, gen: Generation) -> None:
    """Show the reply being generated until it ends, then run the page again.

    The reply runs on the server (``lab.generation``), not in this page run: a refresh or
    a second tab ends this run, and the next page run attaches to the same reply.
    """
    with st.chat_message("assistant"):
        stop_key = f"stop_{conv.session_id}_{len(conv.turns)}"
        st.button("Stop", key=stop_key, on_click=on_stop, args=(conv,), icon=":material/stop_circle:")
        shown = st.empty()
        shown.caption("The assistant is writing…")
        seen, drawn = 0, time.monotonic()
        while not gen.done:
            if gen.wait(seen, 0.25) and not gen.done:
                # Pieces arriving within one draw interval share a draw: each draw costs a
                # Markdown pass over the whole reply and a message to the browser.
                gen.join(max(0.0, DRAW_SECONDS - (time.monotonic() - drawn)))
            # Draw on news, and at least twice a second: every draw is where Streamlit
            # notices that this run should end (a Stop click, a closed tab).
            if gen.pieces > seen or time.monotonic() - drawn >= 0.5:
                seen, drawn = gen.pieces, time.monotonic()
                if gen.text:
                    shown.markdown(render.model_markdown(gen.text) + " ▍")
                else:
                    shown.caption("The assistant is writing…")
        if gen.crashed:
            # Not the model: a run again would fail the same way at once, so the participant decides.
            shown.warning(MODEL_FAILED)
            st.button("Try again", key=f"retry_crashed_{conv.session_id}", icon=":material/refresh:")
            return
    st.rerun()


def chat_step(f: flow.Flow, step: flow.Step, conv: Conversation) -> None:
    """The conversation of the current item: cards, history, the reply in progress, the controls."""
    sid = conv.session_id
    kind = flow.presentation(conv)
    pick_key = f"pick_{sid}_{conv.user_turns}"
    limit_reached = conv.at_turn_limit
    retry = st.session_state.pop(f"retry_{sid}", False) and flow.failed_reply(conv)
    gen = GENERATIONS.running(sid)
    if gen is None:
        conv.recap_if_due()
    if gen is None and (flow.reply_pending(conv) or retry):
        gen = GENERATIONS.start(ENGINE, sid, retry=retry, conv=conv)
    will_stream = gen is not None

    st.caption(f"Task {step.position + 1} of {step.total}")
    st.progress(step.position / max(step.total, 1))
    st.markdown(GUIDE[kind])
    cards_column, chat_column = st.columns([2, 3], gap="medium")
    with cards_column:
        show_cards(conv, pick_key, not will_stream and not limit_reached)
    unsent = st.session_state.get(UNSENT)
    if unsent is not None and unsent.session_id == sid:
        del st.session_state[UNSENT]
        if not flow.stored_after_all(conv, unsent.text, unsent.sent_before):
            give_back(unsent)
    st.chat_input(
        "Write to the assistant…",
        key=chat_key(sid),
        on_submit=on_send,
        args=(conv, pick_key, conv.user_turns),
        submit_mode="disable",
        disabled=will_stream or limit_reached,
    )
    with chat_column:
        for turn in flow.transcript(conv, live=will_stream):
            show_turn(conv, turn)
        if gen is not None:
            live_reply(conv, gen)
            return

        if notice := st.session_state.pop(NOTICE, None):
            st.error(notice)
        if conv.user_turns == 0:
            first = "card 1" if kind in ("pieces", "on_request") else "your card"
            st.caption(f"Start with {first}: write it in your own words, or put it in your message.")
        at_limit = flow.at_limit(conv)
        if at_limit:
            st.info(f"You have sent the {conv.turn_limit} messages this task allows.")
        choices = [] if at_limit else flow.card_choices(conv)
        if choices:
            st.radio(
                "This message shares",
                [0, *choices],
                format_func=lambda c: "no new card" if c == 0 else f"card {c}",
                horizontal=True,
                key=pick_key,
            )
        if not at_limit and (go_ahead := flow.go_ahead_text(conv)):
            st.button(f"Reply: “{go_ahead}”", on_click=on_paste, args=(sid, go_ahead, pick_key, None))
        done, other = st.columns(2)
        ending = None
        if done.button("I have my answer", type="primary", disabled=not flow.can_finish(conv), width="stretch"):
            ending = "answered"
        if at_limit:
            if other.button("Continue without an answer", width="stretch"):
                ending = "turn_limit"
        elif other.button("Give up on this task", width="stretch"):
            ending = "gave_up"
        if ending:
            with st.spinner("Saving…"):
                f.finish_item(conv, ending)
            st.rerun()


def questions_step(f: flow.Flow, step: flow.Step) -> None:
    """The questions after an item or at the end, in one form."""
    kind = step.kind
    if kind == "post_item":
        st.caption(f"Task {step.position + 1} of {step.total}")
        st.title("About this conversation")
    else:
        st.title("Last questions")
    with st.form(f"{kind}_{step.position}"):
        answers = {q.key: question_input(q, key=f"{kind}_{step.position}_{q.key}") for q in f.questions(kind)}
        submitted = st.form_submit_button("Continue" if kind == "post_item" else "Finish", type="primary")
    if submitted:
        try:
            f.answer(kind, answers, step.position)  # type: ignore[arg-type]
        except flow.AnswersRejected as e:
            st.error(str(e))
        else:
            st.rerun()


def done_step(f: flow.Flow) -> None:
    """Debrief, completion code and the way back."""
    end = f.completion()
    st.title("Thank you!")
    if end.debrief:
        st.markdown(render.model_markdown(end.debrief))
    st.write("Your completion code:")
    st.code(end.code, language=None)
    if end.redirect:
        st.link_button("Finish and return", end.redirect, type="primary", icon=":material/check_circle:")


def declined_step() -> None:
    """The goodbye after declining."""
    st.title("Thank you")
    st.write("You chose not to take part, and nothing more will be asked of you. You can close this page.")


def unreachable_page(message: str) -> None:
    """The page while the database cannot be reached: a calm notice instead of a traceback.

    A message the database could not take stays in its box: sending it again is how the
    participant tries again. Otherwise "Try again" runs the page again in this session.
    """
    unsent: Unsent | None = st.session_state.get(UNSENT)
    if unsent is None:
        st.session_state.pop(NOTICE, None)  # this page says it already
        show_unavailable(message)
    st.error(st.session_state.pop(NOTICE, None) or flow.MESSAGE_NOT_SAVED)
    give_back(unsent)
    st.chat_input(
        "Write to the assistant…",
        key=chat_key(unsent.session_id),
        on_submit=on_send,
        args=(unsent.session_id, unsent.pick_key, unsent.sent_before),
        submit_mode="disable",
    )


# --- the page ------------------------------------------------------------------------------

if unavailable := st.session_state.pop(UNAVAILABLE, None):
    show_unavailable(*unavailable)
try:
    with reachable(PAGE_UNAVAILABLE):
        try:
            run = flow.open_page(ENGINE, st.query_params.to_dict())
        except flow.TimeRanOut as e:
            time_ran_out(e.contact)
        except flow.LinkNotValid:
            not_valid()
        visit, participant, current = run.visit, run.flow, run.step
        if visit.token:
            # An open link without a Prolific id: the personal token in the URL brings a refresh back here.
            st.query_params.from_dict({"t": visit.token})
        if st.session_state.get("page_of") != visit.participant_id:
            participant.log_event("page_load", {"step": current.kind, "position": current.position}, current.session_id)
            st.session_state["page_of"] = visit.participant_id

        if current.kind == "timed_out":
            time_ran_out(participant.definition.spec.contact)
        if current.kind == "not_valid":
            not_valid()
        browser_reports(participant, current.session_id)
        if current.kind == "consent":
            consent_step(participant)
        elif current.kind == "instructions":
            instructions_step(participant)
        elif current.kind == "chat":
            assert run.conversation is not None
            chat_step(participant, current, run.conversation)
        elif current.kind in ("post_item", "post_study"):
            questions_step(participant, current)
        elif current.kind == "done":
            done_step(participant)
        else:
            declined_step()
except DatabaseUnavailable as e:
    if st.session_state.get("page_of") is None and nothing_written(e.__cause__ or e):
        # A first visit the busy database could not serve yet: the participant waits, and
        # the page tries again by itself, instead of being shown that something is wrong.
        st.info(ui.STUDY_BUSY, icon=":material/hourglass_top:")
        time.sleep(ui.BUSY_RETRY_SECONDS)
        st.rerun()
    unreachable_page(str(e))
