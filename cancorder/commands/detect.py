"""``cancorder detect``: the adapters (and loggers) cancorder could use, with the command for each."""
import argparse

from .. import argtypes


SOURCES = {}  # it serves no bus: no source kind of a config file


def add_subparser(subparsers, common):
    parser = subparsers.add_parser(
        "detect", parents=[common], help="list the CAN adapters cancorder could serve from",
        description="List SocketCAN interfaces, SLCAN serial adapters, gs_usb devices and the "
                    "TouCAN library, each with the exact command that serves it. "
                    "`cancorder serve --auto` uses the same detection.")
    parser.add_argument("--json", action="store_true",
                        help="print a JSON list of rows instead of the table (for scripts)")
    parser.add_argument("--interfaces", action="extend", type=_names, default=[],
                        metavar="NAME[,NAME]",
                        help="also run python-can's own detection for these backends (pcan, "
                             "kvaser, vector, ...); opt-in because it is slow")
    parser.add_argument("--network", action="store_true",
                        help="also list the ECUconnect loggers announced over Zeroconf")
    parser.add_argument("--browse-time", type=argtypes.seconds, default=3.0, metavar="S",
                        help="how long --network listens (default: 3 s)")
    parser.set_defaults(func=_do_detect)
    return parser


def _names(text):
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"{text!r}: expected python-can interface names")
    return names


def _do_detect(args):
    import json
    import sys

    from ..detection import detect, nothing_found_message

    found = detect(interfaces=args.interfaces, network=args.network,
                   browse_seconds=args.browse_time)
    # an unknown serial port (a legacy ttyS0) is listed but is no adapter
    anything = any(f.kind not in ("problem", "serial") for f in found)
    if args.json:
        json.dump([f.as_dict() for f in found], sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif found:
        _print_table(found)
    if not anything:
        print(f"cancorder detect: {nothing_found_message(args.interfaces, args.network)}",
              file=sys.stderr)
        return 1
    return 0


def _print_table(found, console=None):
    """The table; every command stays on one line, whatever the terminal's width, so that it
    can be copied: the other columns wrap around it, and when even that does not fit (a narrow
    terminal) each command goes on its own line under its row instead."""
    from rich.console import Console
    from rich.markup import escape

    if console is None:
        console = Console(highlight=False)
        if not console.is_terminal:
            console.width = max(console.width, 160)  # piped: keep each row on one line
    # kind, a name folded to 12 columns, details wrapped to 16, the command, 13 for borders
    needed = (max((len(f.kind) for f in found), default=0) + 12 + 16 + 13
              + max((len(f.command) for f in found), default=0))
    beside = needed <= console.width
    table = _table(found, commands_beside=beside)
    console.print(table)
    if not beside:
        commands = [f for f in found if f.command]
        if commands:
            console.print("Commands:")
        for f in commands:
            console.print(escape(f.command), soft_wrap=True, style="bold")


def _table(found, commands_beside):
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="What cancorder can serve from", title_justify="left")
    table.add_column("Kind", no_wrap=True)
    table.add_column("Name", overflow="fold",
                     min_width=min(12, max((len(f.name) for f in found), default=0)))
    table.add_column("Details", min_width=16)
    if commands_beside:
        table.add_column("Command", no_wrap=True,
                         min_width=max((len(f.command) for f in found), default=0))
    for f in found:
        style = "yellow" if f.kind == "problem" else ("" if f.usable or f.command else "dim")
        fix = f"[yellow]{escape(f.fix)}[/yellow]" if f.fix else ""
        cells = [escape(f.kind), escape(f.name),
                 escape(f.details) + ("\n" if f.details and fix else "") + fix]
        if commands_beside:
            cells.append(escape(f.command))
        table.add_row(*cells, style=style)
    return table
