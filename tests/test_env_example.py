"""deploy/env.example names every setting of every service, so an operator finds each one there:
either as a line to fill in or uncomment (and then docker-compose.yml passes it to the services it
configures), or in the list of those compose sets itself or only tests use."""

import re
from pathlib import Path

import pytest
import yaml

from identity.settings import Settings as IdentitySettings
from media.settings import Settings as MediaSettings
from notifier.settings import Settings as NotifierSettings
from posts.settings import Settings as PostsSettings
from shared.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[1]
ENV_EXAMPLE = (ROOT / "deploy" / "env.example").read_text()
SERVICES: dict[str, type[ServiceSettings]] = {
    "identity": IdentitySettings,
    "posts": PostsSettings,
    "media": MediaSettings,
    "notifier": NotifierSettings,
}
# Offered as a line (`NAME=` or `# NAME=`), with a comment above it.
OFFERED = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]*)=\S*$", ENV_EXAMPLE, re.MULTILINE))


@pytest.mark.parametrize("service", SERVICES)
def test_every_setting_is_named_in_env_example(service: str) -> None:
    missing = [
        field.upper()
        for field in SERVICES[service].model_fields
        if not re.search(rf"\b{field.upper()}\b", ENV_EXAMPLE)
    ]
    assert not missing, f"{service} settings not in deploy/env.example: {missing}"


@pytest.mark.parametrize("service", SERVICES)
def test_every_setting_env_example_offers_reaches_the_service(service: str) -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    environment = compose["services"][service]["environment"]
    offered = {field.upper() for field in SERVICES[service].model_fields} & OFFERED
    assert offered, service
    assert sorted(offered - set(environment)) == [], f"not passed to {service} by docker-compose.yml"


def test_every_offered_setting_has_a_comment_above_it() -> None:
    # Directly, or above the group of lines it belongs to (the database passwords share one).
    setting = re.compile(r"#? ?[A-Z][A-Z0-9_]*=\S*")
    lines = ENV_EXAMPLE.splitlines()
    for i, line in enumerate(lines):
        if setting.fullmatch(line):
            above = i - 1
            while above >= 0 and setting.fullmatch(lines[above]):
                above -= 1
            assert above >= 0, line
            assert lines[above].startswith("# "), line
