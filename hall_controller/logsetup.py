"""One log format for the hall's programs (daemon, CLI, the broker child, the emulators, the Qt apps),
and no secret in any of their logs: the output handler carries `redact.RedactingFilter`, and uncaught
exceptions (main thread, other threads, Qt slots) are logged through it instead of printed raw."""

from __future__ import annotations

import logging
import sys
import threading
from types import TracebackType

from .redact import RedactingFilter

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Libraries whose INFO lines drown the hall's own. amqtt stays at WARNING even with --log-level DEBUG:
# its packet logs print CONNECT packets, password included (the filter masks it, but a broker's DEBUG
# line per packet is noise too).
NOISY = ("amqtt", "transitions", "alembic")

_uncaught = logging.getLogger("uncaught")


def setup_logging(level: str = "INFO") -> None:
    root = logging.getLogger()
    before = list(root.handlers)
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), stream=sys.stderr, format=LOG_FORMAT)
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    created = [h for h in root.handlers if h not in before]
    if not created:
        return   # logging was set up already (a program calling another's main, a test harness): left alone
    for handler in created:
        install_redaction(handler)
    if sys.excepthook is sys.__excepthook__:
        sys.excepthook = _log_uncaught
    if threading.excepthook is threading.__excepthook__:
        threading.excepthook = _log_uncaught_in_thread


def install_redaction(handler: logging.Handler) -> None:
    """Mask secrets in everything `handler` writes (idempotent)."""
    if not any(isinstance(f, RedactingFilter) for f in handler.filters):
        handler.addFilter(RedactingFilter())


def _log_uncaught(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    if issubclass(exc_type, KeyboardInterrupt):
        sys.__excepthook__(exc_type, exc, tb)
        return
    _uncaught.critical("uncaught exception", exc_info=(exc_type, exc, tb))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    _uncaught.critical("uncaught exception in thread %s", name,
                       exc_info=(args.exc_type, args.exc_value, args.exc_traceback))
