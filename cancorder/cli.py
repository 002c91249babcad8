"""The ``cancorder`` command: one argparse tree, one module per subcommand.

Each module in cancorder.commands adds its parser with ``add_subparser`` and runs with a small
``_do_<name>(args)``. Here every CancorderError becomes one ``error: ...`` line and a non-zero
exit (the traceback only with --debug). Heavy imports (can, zeroconf, rich) happen inside the
subcommands, so ``--help`` stays fast.
"""
import argparse
import dataclasses
import importlib
import sys

from . import __version__

COMMANDS = ["serve", "toucan", "mock_uds", "replay", "dump", "detect", "service", "relay", "gen",
            "mock_slcan", "man", "completion", "send", "upload", "archive"]


def version_text():
    from . import _fast

    return (f"cancorder {__version__} (core: {_fast.IMPLEMENTATION}, Python "
            f"{sys.version.split()[0]})")


class _VersionAction(argparse.Action):
    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS,
                 help="show the version and which core (compiled or pure) is active"):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        try:
            text = version_text()
        except ImportError as exc:  # e.g. CANCORDER_PURE=1 in a build without the twin
            if getattr(namespace, "debug", False):
                raise
            parser.exit(exc.exit_code, f"error: {exc}\n")
        print(text)
        parser.exit()


class _Parser(argparse.ArgumentParser):
    """argparse's own errors become one line, like every other usage error: the message and
    where to read more (``see cancorder serve --help``), exit 2, no usage block.

    It keeps the flags it is given (by ``add_argument``, on itself or one of its argument
    groups, or from its parents) in ``flags``: the keys a config file reads against. Those a
    config file sets at its top level are also in ``process_flags``; those that only make
    sense on a command line (--config, --debug...) in ``command_line_flags``.
    """

    def __init__(self, *args, parents=(), **kwargs):
        self.flags = []
        self.process_flags = []
        self.command_line_flags = []
        # a prefix of a long flag is refused (--bitrat, --allow-t): every flag exactly as
        # written, as in a config file; the subcommands' parsers are of this class too
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, parents=parents, **kwargs)
        for parent in parents:
            self.flags += parent.flags
            self.process_flags += parent.process_flags
            self.command_line_flags += parent.command_line_flags

    def add_argument(self, *args, **kwargs):
        action = super().add_argument(*args, **kwargs)
        self.flags.append(action)
        return action

    def add_argument_group(self, *args, **kwargs):
        return _Group(super().add_argument_group(*args, **kwargs), self.flags)

    def error(self, message):
        from .errors import UsageError

        raise UsageError(f"{message} (see {self.prog} --help)")


class _Group:
    """An argument group of a _Parser: tells the parser of every flag added to it, and is the
    group it wraps for everything else (argparse's own use of it too)."""

    def __init__(self, group, flags):
        self.group = group
        self.flags = flags

    def __getattr__(self, name):
        return getattr(self.group, name)

    def add_argument(self, *args, **kwargs):
        action = self.group.add_argument(*args, **kwargs)
        self.flags.append(action)
        return action


def build_parser():
    return _build()[0]


def _build():
    """The whole command line, and its registry of sources (source kind -> SourceKind with its
    command's parser: what a config file's buses may be, gathered from the commands' SOURCES).
    Every subparser's defaults hold ``command_parser`` (its own parser), ``sources`` and
    ``whole_parser`` (this one: what the manual page and the completion scripts are made of)."""
    common = _Parser(add_help=False)
    common.command_line_flags.append(
        common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                            help="show tracebacks instead of one-line errors"))
    common.process_flags.append(
        common.add_argument("--log-format", choices=("human", "json"),
                            default=argparse.SUPPRESS,
                            help="human: timestamped lines (the default); json: one JSON "
                                 "object per line (time, level, bus, event, message, fields) "
                                 "for journald, Loki or any collector"))
    parser = _Parser(
        prog="cancorder", parents=[common],
        description="CAN bus logger proxy: streams CAN frames over TCP in the ECUconnect "
                    "Logger format, advertised over Zeroconf.")
    parser.add_argument("--version", action=_VersionAction)
    subparsers = parser.add_subparsers(title="subcommands", metavar="COMMAND")
    sources = {}
    for name in COMMANDS:
        module = importlib.import_module(f".commands.{name}", __package__)
        command_parser = module.add_subparser(subparsers, common)
        for kind, source in module.SOURCES.items():
            sources[kind] = dataclasses.replace(source, parser=command_parser)
    for sub in subparsers.choices.values():
        sub.set_defaults(command_parser=sub, sources=sources, whole_parser=parser)
    return parser, sources


def serving_sources():
    """source kind -> _server_args.SourceKind (with its command's parser), for this build."""
    return _build()[1]


def _parse(parser, argv):
    """Parse; an unknown option after a subcommand is that subcommand's error."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        owner = getattr(args, "command_parser", parser)
        owner.error(f"unrecognized arguments: {' '.join(extra)}"
                    f"{_spelled_out(owner.flags + parser.flags, extra)}")
    return args


def _spelled_out(flags, words):
    """A hint for a word that starts a flag's name (prefixes are refused: allow_abbrev)."""
    hints = []
    for word in words:
        name = word.split("=", 1)[0]
        if not name.startswith("--") or len(name) < 3:
            continue
        hints += sorted({option for action in flags for option in action.option_strings
                         if option.startswith(name) and option != name})
    return f" (flags are written in full: {', '.join(hints)})" if hints else ""


def main(argv=None):
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        from . import errors  # noqa: F401  (loads the core: the first thing that can fail)
    except ImportError as exc:  # the core asked for is not in this build (CANCORDER_PURE=1)
        if debug or getattr(exc, "exit_code", None) is None:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    from .signals import interrupt_startup

    with interrupt_startup():
        try:
            return _main(argv, debug)
        except KeyboardInterrupt:  # a signal during start-up: a stop by signal, like later
            from .errors import EXIT_OK

            return EXIT_OK


def _main(argv, debug):
    from .errors import USER_ERRORS

    parser = build_parser()
    try:
        args = _parse(parser, argv)
    except USER_ERRORS as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    debug = getattr(args, "debug", False)
    from . import logs

    logs.setup(debug, log_format=getattr(args, "log_format", "human"))
    if not hasattr(args, "func"):
        parser.print_help(sys.stderr)
        return 2
    try:
        return args.func(args) or 0
    except USER_ERRORS as exc:
        if debug:
            raise
        logs.error_line(str(exc), exc.exit_code)
        return exc.exit_code
    except BrokenPipeError:
        return 0
    except Exception as exc:
        if debug:
            raise
        logs.error_line(f"{_exception_name(exc)}: {exc} (run with --debug for the traceback)",
                        1)
        return 1


def _exception_name(exc):
    """``ValueError``; ``struct.error`` rather than a bare ``error`` (which read as "error: error:")."""
    kind = type(exc)
    if kind.__name__[:1].isupper() or kind.__module__ in ("builtins", None):
        return kind.__name__
    return f"{kind.__module__.lstrip('_')}.{kind.__name__}"
