"""The ``cancorder`` command: one argparse tree, one module per subcommand.

Each module in cancorder.commands adds its parser with ``add_subparser`` and runs with a small
``_do_<name>(args)``. Here every CancorderError becomes one ``error: ...`` line and a non-zero
exit (the traceback only with --debug). Heavy imports (can, zeroconf, rich) happen inside the
subcommands, so ``--help`` stays fast.
"""
import argparse
import importlib
import sys

from . import __version__

COMMANDS = ["serve", "toucan", "mock_uds", "replay", "dump", "detect"]


def version_text():
    from . import _fast

    return (f"cancorder {__version__} (core: {_fast.IMPLEMENTATION}, Python "
            f"{sys.version.split()[0]})")


class _VersionAction(argparse.Action):
    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS,
                 help="show the version and which core (compiled or pure) is active"):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from .errors import CancorderError

        try:
            text = version_text()
        except CancorderError as exc:  # e.g. CANCORDER_PURE=1 in a build without the twin
            if getattr(namespace, "debug", False):
                raise
            parser.exit(exc.exit_code, f"error: {exc}\n")
        print(text)
        parser.exit()


def build_parser():
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks instead of one-line errors")
    parser = argparse.ArgumentParser(
        prog="cancorder", parents=[common],
        description="CAN bus logger proxy: streams CAN frames over TCP in the ECUconnect "
                    "Logger format, advertised over Zeroconf.")
    parser.add_argument("--version", action=_VersionAction)
    subparsers = parser.add_subparsers(title="subcommands", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f".commands.{name}", __package__).add_subparser(
            subparsers, common)
    return parser


def _quiet_library_logs(debug):
    """python-can logs warnings of its own at import and on a failed open ("Kvaser canlib is
    unavailable", "GsUsbBus was not properly shut down"): they would follow our one clear
    error line, so they are shown only with --debug."""
    import logging

    if debug:
        logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")
        for noisy in ("asyncio",):
            logging.getLogger(noisy).setLevel(logging.INFO)
    else:
        logging.getLogger("can").setLevel(logging.ERROR)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = getattr(args, "debug", False)
    _quiet_library_logs(debug)
    if not hasattr(args, "func"):
        parser.print_help(sys.stderr)
        return 2
    from .errors import CancorderError

    try:
        return args.func(args) or 0
    except CancorderError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:
        if debug:
            raise
        print(f"error: {type(exc).__name__}: {exc} (run with --debug for the traceback)",
              file=sys.stderr)
        return 1
