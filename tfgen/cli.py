"""What every `python -m tfgen.<command>` shares: logging to stderr and the user-error exit.

Errors the user can fix (`TfgenError`) end with one `tfgen: error: ...` line and exit
status 2, never a traceback; anything else is a bug and keeps its traceback.
"""

import logging
import sys

from tfgen.errors import TfgenError

log = logging.getLogger("tfgen")


def setup_logging():
    """`tfgen: ...` INFO lines on the current stderr (one handler, however often called)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("tfgen: %(message)s"))
    log.handlers = [handler]
    log.propagate = False  # absl may have given the root logger a handler too
    log.setLevel(logging.INFO)


def run(command, *args):
    """Call `command(*args)`; its return value is the exit status, 2 for a TfgenError."""
    setup_logging()
    try:
        return command(*args)
    except TfgenError as exc:
        print(f"tfgen: error: {exc}", file=sys.stderr)
        return 2
