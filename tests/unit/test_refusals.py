"""What the front ends say of a service's refusal."""

from __future__ import annotations

from pathlib import Path

from shared import refusals

SERVICES = Path(__file__).resolve().parents[2] / "services"


def test_in_chinese_a_known_title_says_its_meaning_and_nothing_of_the_english() -> None:
    said = refusals.said("Not on duty", 409, "the cadre is not on duty: check in first", "zh")
    assert said == "这名干部没在值班：请先开始值班。"


def test_in_chinese_a_general_title_says_what_the_status_means_with_the_detail_beside() -> None:
    said = refusals.said("Not found", 404, "no such walk list", "zh")
    assert said == "没有找到。（no such walk list）"


def test_in_english_and_for_what_nothing_is_known_the_detail_as_the_service_gave_it() -> None:
    assert refusals.said("Not on duty", 409, "check in first", "en") == "check in first"
    assert refusals.said("Teapot", 418, "short and stout", "zh") == "short and stout"


def test_every_title_given_words_is_one_a_service_refuses_with() -> None:
    source = "\n".join(
        p.read_text() for p in SERVICES.rglob("*.py") if p.parent.name not in ("console", "field")
    )
    assert [t for t in refusals.WORDS if f'"{t}"' not in source] == []
