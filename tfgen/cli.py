"""What every tfgen command shares: logging to stderr, the user-error exit, --verbose.

Errors the user can fix (`TfgenError`) end with one `tfgen: error: ...` line and exit
status 2, never a traceback; anything else is a bug and keeps its traceback.

TensorFlow's C++ log lines (oneDNN and CUDA notices, a failed cuInit on a CPU machine) hide
the `tfgen:` lines that matter, so a command shows them only with `--verbose`. TensorFlow reads
its log level once, when it is imported, which `import tfgen` does before any parser runs:
`tfgen/__init__.py` therefore asks `hides_tensorflow_logs()`, which reads the command line itself.
It also asks `needs_tensorflow()`: `tfgen configs`, `presets`, `--version` and `--help` read
only shipped files, and answer in a fraction of a second without TensorFlow.
"""

import argparse
import contextlib
import logging
import os
import re
import subprocess
import sys
import time

import yaml

from tfgen.errors import TfgenError

log = logging.getLogger("tfgen")

PROGRESS_SECONDS = 5.0

# absl's pre-InitializeLog INFO and WARNING lines ("I0000 00:00:1795611245.808510    6007
# port.cc:153] oneDNN custom ...") and the notice that precedes them; ERROR and FATAL lines pass
# (a command's TF_CPP_MIN_LOG_LEVEL=3 keeps C++ ERROR lines from being written at all).
_TF_STARTUP_LINE = re.compile(
    rb"WARNING: All log messages before absl::InitializeLog\(\)|[IW]\d{4} [\d:.]+ +\d+ [\w.-]+:\d+\] "
)


def setup_logging():
    """`tfgen: ...` INFO lines on the current stderr (one handler, however often called)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("tfgen: %(message)s"))
    log.handlers = [handler]
    log.propagate = False  # absl may have given the root logger a handler too
    log.setLevel(logging.INFO)


def sampling_option(text):
    """argparse type of --option: 'steps=50' -> ('steps', 50), the value read as YAML (safe_load)."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name.strip(), yaml.safe_load(value)


def add_option_argument(parser):
    """Give a command's `parser` the repeatable `--option NAME=VALUE`: the model's sampling
    options (a diffusion model's `steps`, ...), collected as (name, value) pairs."""
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        type=sampling_option,
        metavar="NAME=VALUE",
        help="a sampling option the model declares (e.g. steps=50 for a diffusion model; tfgen models lists "
        "them); repeatable",
    )
    return parser


def add_verbose_argument(parser):
    """Give a command's argparse `parser` the `--verbose` flag; returns the parser.

    The flag acts before the parser runs (see `hides_tensorflow_logs`); declaring it lets every
    command accept it and documents it in --help.
    """
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="also show TensorFlow's C++ log lines (oneDNN, CUDA and device set-up)",
    )
    return parser


def _python_m():
    """(module, its arguments) of `python -m MODULE ...` while MODULE's package is imported, or
    (None, None): Python has then set sys.argv[0] to "-m", and the rest is in sys.orig_argv."""
    args = sys.orig_argv
    if sys.argv[0] != "-m" or "-m" not in args[:-1]:
        return None, None
    at = args.index("-m") + 1
    return args[at], args[at + 1 :]


def started_as_command():
    """Whether this process is a tfgen command: `tfgen <command>`, `tfgen-<command>`,
    `python -m tfgen <command>` or `python -m tfgen.<command>`."""
    name = os.path.basename(sys.argv[0])
    if name == "tfgen" or name.startswith("tfgen-"):
        return True
    module, _ = _python_m()
    return module is not None and (module == "tfgen" or module.startswith("tfgen."))


# `tfgen` invocations that only read what tfgen ships (the listings of configs and presets,
# the version, the help): they need neither TensorFlow nor the model classes.
READS_ONLY_SHIPPED_FILES = ("configs", "presets", "--version", "-h", "--help")


def command_arguments():
    """The arguments after `tfgen` (the console script or `python -m tfgen`); None when this
    process is not the `tfgen` command (a `tfgen-<command>` script, `python -m tfgen.<command>`,
    or tfgen imported as a library)."""
    if os.path.basename(sys.argv[0]) == "tfgen":
        return sys.argv[1:]
    module, args = _python_m()
    return args if module == "tfgen" else None


def needs_tensorflow():
    """False only for `tfgen configs`, `tfgen presets`, `tfgen --version` and `tfgen --help`:
    `import tfgen` then skips TensorFlow and the models (about 8 s of a core), so they answer
    at once."""
    args = command_arguments()
    return not (args and args[0] in READS_ONLY_SHIPPED_FILES)


def hides_tensorflow_logs():
    """Whether a tfgen command should hide TensorFlow's C++ log lines.

    Yes unless `--verbose` (or a prefix argparse would accept, like `--verb`) is on the command
    line. Imported as a library, tfgen never hides more than it always has.
    """
    verbose = any(len(arg) > 2 and "--verbose".startswith(arg) for arg in sys.argv[1:])
    return started_as_command() and not verbose


# Run in a child process, which reads the pipe even while the import holds the GIL (inside
# dlopen) and forwards what is left after a crash (a FATAL line, then abort). A Ctrl-C meant
# for the command must not print the filter's own traceback: it ends when the pipe closes.
_STDERR_FILTER = """\
import re, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
startup_line = re.compile(sys.argv[1].encode())
for line in sys.stdin.buffer:
    if not startup_line.match(line):
        sys.stderr.buffer.write(line)
        sys.stderr.buffer.flush()
"""


@contextlib.contextmanager
def tensorflow_startup_lines_hidden():
    """Drop absl's INFO/WARNING lines from file descriptor 2 inside the block; pass the rest on.

    TensorFlow writes its oneDNN and CUDA stub notices while it is imported, before absl's
    logging is initialised, so TF_CPP_MIN_LOG_LEVEL cannot silence them; only the file they are
    written to can be filtered. Everything else (Python warnings, FATAL lines, and ERROR lines
    where the log level lets them through) is forwarded line by line as it comes.
    """
    sys.stderr.flush()
    stderr = os.dup(2)
    forwarder = subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", _STDERR_FILTER, _TF_STARTUP_LINE.pattern.decode()],
        stdin=subprocess.PIPE,
    )
    os.dup2(forwarder.stdin.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(stderr, 2)
        os.close(stderr)
        forwarder.stdin.close()  # the pipe's last write end: the forwarder reads to its end
        with contextlib.suppress(subprocess.TimeoutExpired):
            # Output still on its way keeps its place before ours; but never hang on a
            # process started in the block that still holds the pipe.
            forwarder.wait(timeout=10)


def run(command, *args):
    """Call `command(*args)`; its return value is the exit status, 2 for a TfgenError."""
    setup_logging()
    try:
        return command(*args)
    except TfgenError as exc:
        print(f"tfgen: error: {exc}", file=sys.stderr)
        return 2


class Progress:
    """INFO lines for long work, at most one every PROGRESS_SECONDS (the first after that long)."""

    def __init__(self):
        self.last = time.monotonic()

    def __call__(self, message, *args):
        if time.monotonic() - self.last >= PROGRESS_SECONDS:
            log.info(message, *args)
            self.last = time.monotonic()
