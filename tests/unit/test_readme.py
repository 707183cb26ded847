"""The README's topic and configuration tables stay true to the code."""

from __future__ import annotations

import re
from pathlib import Path

from services.dispatch.settings import DispatchSettings
from services.district.settings import DistrictSettings
from services.notify.settings import NotifySettings
from services.orders.settings import OrdersSettings
from services.volunteers.settings import VolunteersSettings
from shared import topics
from shared.events import KNOWN_TYPES
from shared.settings import FrontEndSettings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_event_type_and_topic_is_in_the_readme() -> None:
    listed = set(re.findall(r"`(doorstep\.[a-z_.]+\.v\d+)`", README))
    assert listed == set(KNOWN_TYPES)
    for topic in topics.ALL:
        assert f"| `{topic}` |" in README


def test_every_setting_is_in_the_configuration_table() -> None:
    for cls in (
        OrdersSettings,
        VolunteersSettings,
        DispatchSettings,
        NotifySettings,
        DistrictSettings,
        FrontEndSettings,
    ):
        prefix = cls.model_config["env_prefix"]
        for field in cls.model_fields:
            assert f"| `{prefix}{field.upper()}` |" in README, field


def test_every_make_target_is_in_the_readme() -> None:
    makefile = (Path(__file__).resolve().parents[2] / "Makefile").read_text()
    for target in re.findall(r"^([a-z0-9-]+):.*## ", makefile, re.MULTILINE):
        assert re.search(rf"`make {target}\b", README), target
