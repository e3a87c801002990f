"""No secret in a log line (shared/logs.py): the values after secret field names, in links and in
pydantic errors are withheld, whatever logs them; the AMQP client libraries stay at WARNING."""

import io
import json
import logging
from collections.abc import Iterator

import pytest
from pydantic import ValidationError

import shared.contracts  # noqa: F401 (registers every event type)
from shared.contracts import InvitationIssued
from shared.envelope import event_model, registered_types
from shared.logs import QUIET_LIBRARIES, SECRET_FIELDS, WITHHELD, log_handler, setup_logging, withhold_secrets

CODE = "KD7M-3QXZ-PA4R-9TNF"


def test_every_events_secret_fields_are_withheld_from_logs() -> None:
    secret = {name for key in registered_types() for name in event_model(*key).secret_fields}
    assert secret, "no event declares a secret"
    assert secret <= SECRET_FIELDS


@pytest.mark.parametrize(
    "text",
    [
        # aiormq's frame reprs: the message body as bytes.
        f"""Prepare to send ChannelFrame(payload=b'\\x03\\x00\\x01{{"payload": {{"access_code": "{CODE}", "reminder": 0}}}}\\xce')""",
        f"""{{'access_code': '{CODE}', 'reminder': 0}}""",
        f"""InvitationIssued(access_code='{CODE}', reminder=0)""",
        f"""{{"error": "{{\\"access_code\\": \\"{CODE}\\"}}"}}""",
        f"""Open https://klaspost.nl/invite#code={CODE} to begin""",
        f"""reset at https://klaspost.nl/reset#token={CODE}""",
    ],
)
def test_a_secret_is_withheld_in_every_shape_it_is_printed_in(text: str) -> None:
    stripped = withhold_secrets(text)
    assert CODE not in stripped
    assert WITHHELD in stripped


def test_a_pydantic_error_about_an_event_is_logged_without_its_input() -> None:
    # Pydantic cuts a long input in the middle, so the field's name may go while its value stays.
    payload = {"invitation_id": "c0ffee00-0000-7000-8000-000000000000", "access_code": CODE, "reminder": 0}
    with pytest.raises(ValidationError) as error:
        InvitationIssued.model_validate(payload)
    # Here: "input_value={'invitation_id': 'c...-9TNF', 'reminder': 0}": a piece of the code, nameless.
    assert CODE[-4:] in str(error.value)
    assert CODE[-4:] not in withhold_secrets(str(error.value))


def test_a_record_is_stripped_as_it_is_made_and_the_services_handler_strips_its_extras_too() -> None:
    out = io.StringIO()
    logger = logging.getLogger("klaspost.test.secrets")
    logger.addHandler(log_handler("test", stream=out))
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger.addHandler(Keep())
    try:
        logger.debug("frame %r", {"access_code": CODE})
        logger.error("event parked", extra={"error": f"unreadable event: access_code={CODE}"})
        try:
            raise ValueError(f"bad body {{'access_code': '{CODE}'}}")
        except ValueError:
            logger.exception("handler failed")
    finally:
        logger.handlers.clear()
        logger.propagate = True
    assert CODE not in records[0].getMessage()
    assert CODE not in (records[2].exc_text or "")
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert not [line for line in lines if CODE in line]
    assert json.loads(lines[1])["error"] == f"unreadable event: access_code={WITHHELD}"


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level for name in QUIET_LIBRARIES}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, old in levels.items():
        logging.getLogger(name).setLevel(old)


@pytest.mark.usefixtures("restored_logging")
def test_the_amqp_libraries_stay_at_warning_when_a_service_logs_at_debug() -> None:
    setup_logging("test", "DEBUG")
    assert logging.getLogger().level == logging.DEBUG
    for name in ("aiormq", "aiormq.connection", "aio_pika", "pamqp"):
        assert logging.getLogger(name).getEffectiveLevel() == logging.WARNING, name
