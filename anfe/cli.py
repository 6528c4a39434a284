"""The ``anfe`` command: a host for the subcommands that the packages register.

Every subcommand is an entry of the ``anfe.commands`` entry-point group (``pyproject.toml``): a
function ``register(subparsers)`` that adds one parser with ``func`` (what runs it) and
``needs_models`` (whether it detects or encodes faces: the dlib stack is then checked before it
starts) set. The host imports none of them: it loads only the entry of the command about to run
(``anfe build`` starts ~0.35 s sooner without the service's FastAPI), and all of them for
``--help``.

Errors print one line ``anfe: error: <message>`` and exit with the code :data:`EXIT_CODES` gives
the error's ``kind``: 2 bad usage, 3 some or all images failed, 4 centroids missing, 5 database
unusable, 6 face model unusable or a download failed, 1 anything else; 130 when interrupted, 141
when the output pipe is closed.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from importlib.metadata import entry_points, version
from typing import NoReturn

from anfe.centroids.errors import AnfeError
from anfe.options import formatter

BROKEN_PIPE_EXIT = 141  # 128 + SIGPIPE, what a shell reports for a writer whose reader left
INTERRUPTED_EXIT = 130
ENTRY_POINTS = "anfe.commands"

# The one place where errors become exit codes, as anfe/app/errors.py maps them to HTTP statuses:
# by the ``kind`` every error class declares (anfe.centroids.errors.AnfeError), so the host names
# no command's own errors.
EXIT_CODES: dict[str, int] = {
    "usage": 2,
    "image": 3,
    "centroids": 4,
    "database": 5,
    "model": 6,
    "download": 6,
}


def exit_code(exc: AnfeError) -> int:
    """The exit code of a project error, from its ``kind`` (1 for a kind not listed)."""
    return EXIT_CODES.get(exc.kind, 1)


class Parser(argparse.ArgumentParser):
    """argparse's parser whose usage errors are one line, ``anfe: error: ...`` (exit 2), as every
    other error of the command; the subcommands' parsers are of this class too."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("anfe").strip()
        where = f"{command}: " if command else ""
        see = f"anfe {command} --help" if command else "anfe --help"
        sys.exit(_end(2, f"anfe: error: {where}{message} (see {see})"))


def parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``anfe`` parser: with the subcommand ``command`` alone when it is a registered one,
    else with every registered subcommand (for ``--help`` and for usage errors)."""
    p = Parser(
        prog="anfe",
        description="Gender recognition with Average Neural Face Embeddings.",
        formatter_class=formatter,
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log more")
    p.add_argument(
        "--version", action="version", version=f"anfe {version('anfe')}", help="print the version"
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    found = {ep.name: ep for ep in entry_points(group=ENTRY_POINTS)}
    chosen = [found[command]] if command in found else [found[n] for n in sorted(found)]
    for ep in chosen:
        ep.load()(sub)
    for command_parser in sub.choices.values():  # -v after the subcommand too
        command_parser.add_argument(
            "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log more"
        )
    return p


def _command(argv: list[str]) -> str | None:
    """The subcommand ``argv`` runs: its first word not an option (the top-level options take no
    value). None when another top-level option than ``-v`` comes first (``--help`` lists every
    subcommand, whatever follows it)."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg
        if arg not in ("-v", "--verbose"):
            return None
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser(_command(argv)).parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        if getattr(args, "needs_models", False):
            from anfe.centroids.vision import requirements

            requirements.check()
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here rather than at exit
        return code
    except BrokenPipeError:
        return _end(BROKEN_PIPE_EXIT)  # the reader left (``anfe ... | head``): stop quietly
    except AnfeError as exc:
        return _end(exit_code(exc), f"anfe: error: {exc.message}")
    except KeyboardInterrupt:
        return _end(INTERRUPTED_EXIT, "anfe: interrupted; finished work is saved, rerun to resume")


def _end(code: int, line: str | None = None) -> int:
    """Flush stdout, print ``line`` on stderr, return ``code``.

    Output still buffered for a pipe whose reader has gone is dropped: the run ends with its own
    code (an error's, not 141) and without Python's "Exception ignored ... Broken pipe" at exit,
    which would also turn the code into 120.
    """
    for stream, text in ((sys.stdout, None), (sys.stderr, line)):
        try:
            if text is not None:
                print(text, file=stream)
            stream.flush()
        except BrokenPipeError:
            to_devnull(stream)
    return code


def to_devnull(stream) -> None:
    """Point ``stream`` (stdout, stderr) at /dev/null once the reader of its pipe has gone.

    Later writes, and Python's flush at exit, then succeed instead of failing again.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, stream.fileno())
    os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
