"""The manual page and the shell completion scripts, both made from the argparse parser itself
(``cli.build_parser``), so that neither can miss a flag or keep one that is gone.

The one home of both texts: ``cancorder man`` and ``cancorder completion`` print them, and
setup.py writes the page into the package's ``share/man/man1`` at build time (``man cancorder``).
argparse-manpage writes the roff, shtab the scripts.
"""
from . import __version__

SHELLS = ("bash", "zsh")
SECTION = 1
PAGE_NAME = f"cancorder.{SECTION}"


def manual_page(parser):
    """The roff source of cancorder(1): the main command, then a section per subcommand."""
    from argparse_manpage.manpage import Manpage

    page = str(Manpage(parser, {
        "project_name": "cancorder",
        # the NAME line (what whatis and apropos show): the description's first words
        "description": parser.description.split(":", 1)[0],
        "version": __version__,
        "manual_section": SECTION,
        "manual_title": "cancorder manual",
    }))
    return "\n".join(_as_text(line) for line in page.split("\n"))


# the requests argparse-manpage writes; any other line that starts with "." or "'" is help text
# that wrapped there (".blf, .asc ...") and would be read as an unknown request
_REQUESTS = ("", "TH", "SH", "SS", "TP", "B", "I", "IP", "PP", "RS", "RE", "BR", "br")


def _as_text(line):
    if line[:1] == "'" or (line[:1] == "." and line[1:].split(" ", 1)[0] not in _REQUESTS):
        return "\\&" + line
    return line


def completion_script(parser, shell):
    """The completion script of ``shell`` (one of SHELLS) for the whole command line."""
    import shtab

    return shtab.complete(parser, shell=shell)
