"""``cancorder man``: print the manual page (the one ``man cancorder`` shows), made from the parser."""

SOURCES = {}  # it serves no bus: no source kind of a config file


def add_subparser(subparsers, common):
    parser = subparsers.add_parser(
        "man", parents=[common], help="print the manual page (roff, for man -l -)",
        description="Print cancorder's manual page in roff: every subcommand and flag, made "
                    "from this program's own command line. A pip install puts the same page "
                    "where `man cancorder` finds it; elsewhere (the standalone executable): "
                    "`cancorder man | man -l -`.")
    parser.set_defaults(func=_do_man)
    return parser


def _do_man(args):
    import sys

    from ..manual import manual_page

    sys.stdout.write(manual_page(args.whole_parser))
    return 0
