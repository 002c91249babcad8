"""``cancorder completion SHELL``: print a shell completion script made from the parser."""
from ..manual import SHELLS

SOURCES = {}  # it serves no bus: no source kind of a config file


def add_subparser(subparsers, common):
    parser = subparsers.add_parser(
        "completion", parents=[common], help="print a bash or zsh completion script",
        description="Print the tab completion script of a shell for every subcommand and flag. "
                    "bash: `source <(cancorder completion bash)` in ~/.bashrc; zsh: "
                    "`cancorder completion zsh > ~/.zfunc/_cancorder` with ~/.zfunc in fpath "
                    "before compinit.")
    parser.add_argument("shell", choices=SHELLS, help="the shell the script is for")
    parser.set_defaults(func=_do_completion)
    return parser


def _do_completion(args):
    import sys

    from ..manual import completion_script

    sys.stdout.write(completion_script(args.whole_parser, args.shell))
    return 0
