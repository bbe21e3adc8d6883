"""Safe rendering: model Markdown never loads images; participant text stays literal."""

from __future__ import annotations

import random
import re

import pytest

from lab.render import WORD_JOINER, escape_markdown, model_markdown

IMAGE = re.compile(r"(?<!\\)!\[")
"""An image opener CommonMark would parse (an unescaped ``![``)."""


def visible(text: str) -> str:
    return text.replace(WORD_JOINER, "")


def test_inline_image_becomes_a_labelled_link() -> None:
    out = model_markdown("See ![a chart](https://host.example/?q=secret) here.")
    assert out == "See [image: a chart](<https://host.example/?q=secret>) here."
    assert not IMAGE.search(out)


def test_image_without_alt_keeps_its_address_visible() -> None:
    out = model_markdown('![](https://host.example/x.png "title")')
    assert out == "[image](<https://host.example/x.png>)"


def test_image_with_angle_bracket_destination() -> None:
    assert model_markdown("![x](<https://h.example/a.png>)") == "[image: x](<https://h.example/a.png>)"
    assert model_markdown("![x](https://h.example/a_(b).png)") == "[image: x](<https://h.example/a_(b).png>)"


@pytest.mark.parametrize("url", ["javascript:alert(1)", "data:image/png;base64,AAAA", "/relative.png", "//host.example/x.png"])
def test_image_with_other_address_becomes_plain_text(url: str) -> None:
    out = model_markdown(f"![x]({url})")
    assert "](" not in out.replace("\\]", "").replace("\\(", "")
    assert "image: x" in out and not IMAGE.search(out)


@pytest.mark.parametrize(
    "text",
    [
        "![alt][ref]\n\n[ref]: https://host.example/leak.png",
        "![alt][]\n\n[alt]: https://host.example/leak.png",
        "![alt]\n\n[alt]: https://host.example/leak.png",
        "[![alt](https://host.example/leak.png)](https://example.org)",
        "![a [nested] alt](https://host.example/leak.png)",
        "\\\\![alt](https://host.example/leak.png)",
        "!![alt](https://host.example/leak.png)",
        "<https://host.example/a.png> and ![x](<https://host.example/leak.png>)",
    ],
)
def test_every_image_form_is_neutralized(text: str) -> None:
    assert not IMAGE.search(model_markdown(text))


def test_already_escaped_image_is_left_alone() -> None:
    assert visible(model_markdown("\\![alt](https://h.example/x.png)")) == "\\![alt](https://h.example/x.png)"


def test_code_looks_unchanged_but_holds_no_image() -> None:
    text = "Use `![x](u)` or\n\n```js\nif (!flags[i]) { cost = $5; }\n```\nthen $3."
    out = model_markdown(text)
    assert not IMAGE.search(out)
    assert visible(out) == "Use `![x](u)` or\n\n```js\nif (!flags[i]) { cost = $5; }\n```\nthen \\$3."


def test_unclosed_fence_runs_to_the_end() -> None:
    out = model_markdown("Here:\n```\nprice = $3\n![x](https://h.example/y)")
    assert visible(out) == "Here:\n```\nprice = $3\n![x](https://h.example/y)"
    assert not IMAGE.search(out)


def test_dollar_signs_are_escaped_outside_code() -> None:
    assert model_markdown("Muffins cost $3 and bread $5.") == "Muffins cost \\$3 and bread \\$5."
    assert model_markdown("Already \\$3.") == "Already \\$3."


def test_html_is_left_for_streamlit_to_escape() -> None:
    text = "<b>bold</b> <img src=https://h.example/x.png> <script>alert(1)</script>"
    assert model_markdown(text) == text


def test_ordinary_markdown_is_kept() -> None:
    text = "**Total:** 230\n\n- a\n- b\n\n[docs](https://example.org)"
    assert model_markdown(text) == text


def test_no_image_survives_random_text() -> None:
    rng = random.Random(7)
    alphabet = ["!", "[", "]", "(", ")", "<", ">", "\\", "`", "$", " ", "\n", "a", "http://h/x", "```", "~~~"]
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 30)))
        assert not IMAGE.search(model_markdown(text)), text


def test_escape_markdown_makes_every_mark_literal() -> None:
    out = escape_markdown("*a* _b_ `c` <d> [e](f) # $1\nnext")
    assert out == "\\*a\\* \\_b\\_ \\`c\\` \\<d\\> \\[e\\]\\(f\\) \\# \\$1  \nnext"
