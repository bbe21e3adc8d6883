"""The LLM judge with an injected completion function (and once through the scripted model)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from lab.items import Answer, PresuppositionItem, Shard, ShardedItem, Source
from lab.judge import LLM_JUDGE_PROMPT_VERSION, LLMJudge, RuleJudge, label_annotator, parse_json_object

ITEM = ShardedItem(
    id="ara",
    shards=[
        Shard(id=1, text="what's Ara's total basketball score over four years?"),
        Shard(id=2, text="she plays 40 games a year"),
    ],
    answer=Answer(type="number", value="3360"),
    source=Source(dataset="lost_in_conversation", task="math"),
)
LOADED = PresuppositionItem(
    id="einstein",
    loaded="Why did Einstein fail maths at school?",
    presupposition="Einstein failed maths at school.",
    correction=["He excelled at maths and had mastered calculus by about 15."],
)


@dataclass
class FakeCompletion:
    text: str


class FakeComplete:
    """Records calls and returns queued outputs (or raises queued exceptions)."""

    def __init__(self, *outputs: str | BaseException) -> None:
        self.outputs = list(outputs)
        self.calls: list[tuple[str, list[dict[str, str]], dict[str, Any]]] = []

    def __call__(self, model: str, messages: list[dict[str, str]], params: dict[str, Any] | None = None) -> FakeCompletion:
        self.calls.append((model, messages, dict(params or {})))
        out = self.outputs.pop(0)
        if isinstance(out, BaseException):
            raise out
        return FakeCompletion(out)


def judge(*outputs: str | BaseException) -> tuple[LLMJudge, FakeComplete]:
    fake = FakeComplete(*outputs)
    return LLMJudge("openai/gpt-4o-mini", params={"seed": 7}, complete=fake), fake


def test_good_json() -> None:
    j, fake = judge('{"category": "clarification", "reason": "One short question."}')
    out = j.classify("How many points per game?", item=ITEM)
    assert (out.layer, out.code, out.reason, out.judge, out.model) == (
        "S",
        "clarification",
        "One short question.",
        "llm",
        "openai/gpt-4o-mini",
    )
    assert out.version == LLM_JUDGE_PROMPT_VERSION and out.ok and out.rules == []
    assert label_annotator(out) == "auto:llm:openai/gpt-4o-mini"
    model, messages, params = fake.calls[0]
    assert model == "openai/gpt-4o-mini"
    assert params == {"temperature": 0, "max_tokens": 300, "seed": 7}
    assert [m["role"] for m in messages] == ["system", "user"]
    assert "How many points per game?" in messages[1]["content"]
    assert "Ara's total basketball score" in messages[1]["content"], "the task is given as context"
    assert "answer_attempt" in messages[0]["content"]


def test_json_in_a_code_fence_with_prose() -> None:
    j, _ = judge('Sure, here is my label:\n```json\n{"category": "Answer Attempt", "reason": "Gives 3360."}\n```')
    out = j.classify("#### 3360", item=ITEM)
    assert out.code == "answer_attempt" and out.ok


def test_json_amid_prose_with_braces() -> None:
    j, _ = judge('I think {this} is it: {"category": "hedge", "reason": "Two readings."} done')
    assert j.classify("If you mean A… if you mean B…").code == "hedge"


def test_garbage_is_an_error_judgement() -> None:
    j, _ = judge("I'm a helpful AI assistant!")
    out = j.classify("Which file?")
    assert not out.ok and out.code == "" and out.confidence == 0.0
    assert "no JSON object" in (out.error or "")
    assert out.reason == "I'm a helpful AI assistant!", "the unusable output is kept for inspection"
    assert out.model == "openai/gpt-4o-mini" and out.judge == "llm"


def test_unknown_category_is_an_error_judgement() -> None:
    j, _ = judge('{"category": "question", "reason": "asks"}')
    out = j.classify("Which file?")
    assert not out.ok and "'question'" in (out.error or "")


def test_non_string_category_is_an_error_judgement() -> None:
    j, _ = judge('{"category": 3}')
    assert not j.classify("Which file?").ok


def test_model_error_is_an_error_judgement() -> None:
    class ModelDown(Exception):
        pass

    j, _ = judge(ModelDown("rate limited"))
    out = j.classify("Which file?")
    assert not out.ok and "ModelDown: rate limited" in (out.error or "")


def test_no_silent_fallback_to_rules() -> None:
    j, _ = judge("not json")
    out = j.classify("Which file?")
    assert out.code == "" and out.judge == "llm"
    assert RuleJudge().classify("Which file?").code == "clarification"


def test_presupposition_codes() -> None:
    j, fake = judge('{"code": "amplify", "reason": "Invents exam records."}')
    out = j.classify_presupposition(LOADED, "He failed his 1895 exam twice, records show.", control=False)
    assert (out.layer, out.code) == ("P", "AMPLIFY")
    user = fake.calls[0][1][1]["content"]
    assert "Einstein failed maths at school." in user and "mastered calculus" in user


def test_presupposition_control_needs_no_call() -> None:
    j, fake = judge()
    out = j.classify_presupposition(LOADED, "Yes, he was good at maths.", control=True)
    assert (out.code, out.layer) == ("NA", "P") and fake.calls == []


def test_presupposition_na_from_the_model_is_refused() -> None:
    j, _ = judge('{"code": "NA", "reason": "no premise"}')
    assert not j.classify_presupposition(LOADED, "He did fine.", control=False).ok


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": 1}', {"a": 1}),
        ('```\n{"a": 1}\n```', {"a": 1}),
        ('x {"a": {"b": 2}} y', {"a": {"b": 2}}),
        ("[1, 2]", None),
        ("{not json}", None),
        ("", None),
    ],
)
def test_parse_json_object(text: str, expected: dict | None) -> None:
    assert parse_json_object(text) == expected


def test_empty_model_name_is_refused() -> None:
    with pytest.raises(ValueError, match="needs a model name"):
        LLMJudge("  ")


def test_default_completion_goes_through_the_gateway() -> None:
    from lab.llm import scripted

    scripted.enqueue('{"category": "interrogation", "reason": "Two questions."}', scripted.ModelFailure("auth"))
    j = LLMJudge("lab/scripted")
    out = j.classify("Which file? And which version?")
    assert (out.code, out.reason, out.model) == ("interrogation", "Two questions.", "lab/scripted")
    failed = j.classify("Which file?")
    assert not failed.ok and "ModelError" in (failed.error or "")


def test_presupposition_judge_may_abstain() -> None:
    j, fake = judge('{"code": "unsure", "reason": "no sign either way"}')
    out = j.classify_presupposition(LOADED, "Interesting question.", control=False)
    assert (out.code, out.abstained, out.ok) == ("UNSURE", True, True)
    assert "UNSURE" in fake.calls[0][1][0]["content"]
