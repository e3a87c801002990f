"""Structured JSON logs, the correlation id that ties a request to every event it causes, and no
secret in any log line.

Secrets: InvitationIssued carries an access code and PasswordResetRequested a reset token
(``Event.secret_fields``), in message bodies that client libraries print whole at DEBUG (aiormq's
frames, pamqp's) and some at WARNING and ERROR too (aiormq's "Got frame for closed channel %d: %r",
aio-pika's "Message %r lost ..."); a pydantic error about such an event prints its input. Two
guards: those libraries are kept at WARNING whatever LOG_LEVEL says, and every record is stripped of
secrets as it is made (its message, arguments and traceback; our own handler also its extra fields):
the value after a secret field's name (``access_code``, ``reset_token``, ``password``, in JSON, a
Python repr or ``name=value``), after ``code=`` or ``token=`` in a link, and any pydantic
``input_value``. What is withheld reads ``[withheld]``.
"""

import contextvars
import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

correlation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("correlation_id", default=None)

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}

# Every event's secret_fields are among these (shared/tests/test_logs.py holds them to it).
SECRET_FIELDS = frozenset({"access_code", "reset_token", "password"})
WITHHELD = "[withheld]"
# Client libraries whose records can carry message bodies or headers whole: kept at WARNING at least.
QUIET_LIBRARIES = ("aiormq", "aio_pika", "pamqp", "hpack", "h2", "aioapns")

_SECRETS = re.compile(
    # A field's name, a separator with the quotes of JSON, a Python repr or JSON inside a string
    # (\"), then its value up to the next quote, separator or bracket.
    r"""(?P<keep>\b(?:"""
    + "|".join(sorted(SECRET_FIELDS))
    + r""")\\?["']?\s*[:=]\s*\\?["']?)[^"'\\\s,;&})\]]+"""
    # A link's code or token (the invitation link carries the code in its fragment).
    + r"""|(?P<link>[#?&](?:code|token)=)[^&\s"'<>\\]+"""
    # What a pydantic error says was sent, up to its input_type (its repr may be cut in the middle,
    # a field's name with it; pprint may break the error over several string literals).
    + r"""|(?P<input>input_value=).*?(?=,? ?['"\s]*input_type=)""",
    re.DOTALL,
)


def withhold_secrets(text: str) -> str:
    """``text`` with the value of every secret it names replaced by WITHHELD."""
    return _SECRETS.sub(lambda m: (m["keep"] or m["link"] or m["input"]) + WITHHELD, text)


def _strip_record(record: logging.LogRecord) -> None:
    """The record's message, arguments and traceback without secrets (in place)."""
    try:
        message = record.getMessage()
    except (TypeError, ValueError, KeyError):
        message = None  # an ill-formed call: logging reports it with the handler's error
    if message is not None:
        stripped = withhold_secrets(message)
        if stripped != message:
            record.msg, record.args = stripped, None
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = withhold_secrets(record.exc_text)
    if record.stack_info:
        record.stack_info = withhold_secrets(record.stack_info)


class WithholdSecrets(logging.Filter):
    """A handler's filter: what the record factory did, and the extra fields the factory cannot see
    (``extra=`` is set on a record after it is made)."""

    def filter(self, record: logging.LogRecord) -> bool:
        _strip_record(record)
        for key, value in list(record.__dict__.items()):
            if key in _STANDARD or value is None or isinstance(value, bool | int | float):
                continue
            text = value if isinstance(value, str) else str(value)
            stripped = withhold_secrets(text)
            if stripped != text:
                record.__dict__[key] = stripped
        return True


_base_factory = logging.getLogRecordFactory()


def _record_with_correlation_id(*args: Any, **kwargs: Any) -> logging.LogRecord:
    # Stamped when the record is made, in the task that logs it: later formatting may run elsewhere.
    # Stripped of secrets then too, so that no handler (a test's, an operator's) ever sees them.
    record = _base_factory(*args, **kwargs)
    record.correlation_id = correlation_id.get()
    _strip_record(record)
    return record


logging.setLogRecordFactory(_record_with_correlation_id)


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            # As the record factory left it (without secrets).
            entry["exception"] = record.exc_text
        return json.dumps(entry, default=str)


def log_handler(service: str, as_json: bool = True, stream: TextIO | None = None) -> logging.Handler:
    """The handler every service logs through: JSON lines (or plain text) without secrets."""
    handler = logging.StreamHandler(stream or sys.stdout)
    if as_json:
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(logging.Formatter(f"%(asctime)s {service} %(levelname)s %(name)s %(message)s"))
    handler.addFilter(WithholdSecrets())
    return handler


def setup_logging(service: str, level: str = "INFO", as_json: bool = True) -> None:
    root = logging.getLogger()
    root.handlers[:] = [log_handler(service, as_json)]
    root.setLevel(level.upper())
    # aio-pika/aiormq log every reconnect attempt at INFO and message bodies at DEBUG; warnings are
    # what an operator needs.
    for noisy in (*QUIET_LIBRARIES, "asyncio", "aiohttp.access", "botocore", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
