"""The README and docs/ say what the code does: every `cancorder ...` line of their code blocks
is parsed by the real command line, every command that runs a script of this project with
Python names the venv's interpreter, every link between the pages lands on a file and a
heading, and the README stays a short page that leads to every docs/ page."""
import contextlib
import glob
import io
import os
import re
import shlex
import subprocess
import sys

import pytest

from cancorder import cli
from cancorder.errors import USER_ERRORS
from tests.helpers import cancorder_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
DOCS = sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
PAGES = [README] + DOCS
VENV_PYTHON = ".venv/bin/python"
SHELL_OPERATORS = ("|", "&", ";", ">", "<")  # a command line ends at the first of these


def _read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def _name(path):
    return os.path.relpath(path, ROOT)


def code_lines(text):
    """(line number, line) of every line inside a code block: fenced (```) or indented by four
    spaces after a blank line (a list item's code included); a line ending in a backslash is
    joined with the next, as the shell does."""
    out = []
    fenced = indented = False
    previous_blank = True
    for number, line in enumerate(text.split("\n"), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            previous_blank = False
            continue
        blank = not line.strip()
        if not fenced:
            if blank:
                previous_blank = True
                continue
            indented = line.startswith("    ") and (previous_blank or indented)
            previous_blank = False
            if not indented:
                continue
        if out and out[-1][1].endswith("\\"):
            out[-1] = (out[-1][0], out[-1][1][:-1] + " " + line.strip())
        elif not blank:
            out.append((number, line.strip()))
    return out


def inline_code(text):
    """Every `code span` outside the code blocks, its line breaks made spaces."""
    text = re.sub(r"^\s*```.*?^\s*```", "", text, flags=re.S | re.M)
    return [span.replace("\n", " ") for span in re.findall(r"(?<!`)`([^`]+)`(?!`)", text)]


def words(line):
    """The words of the first command of a shell line: cut at a comment and at the first pipe,
    `&`, `;` or redirection; None when it is not shell (unbalanced quotes)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars="|&;<>")
    lexer.commenters = ""  # '#' starts a comment only at a word's start: handled below
    lexer.whitespace_split = True
    try:
        tokens = list(lexer)
    except ValueError:
        return None
    out = []
    for token in tokens:
        if token.startswith("#") or (token and token[0] in SHELL_OPERATORS):  # "" is a word
            break
        out.append(token)
    return out


def program(argv):
    """(program, arguments): past `sudo` and VAR=value assignments."""
    while argv and (argv[0] == "sudo" or re.match(r"[A-Za-z_][A-Za-z0-9_]*=", argv[0])):
        argv = argv[1:]
    return (argv[0], argv[1:]) if argv else (None, [])


def cancorder_lines():
    """(where, arguments) of every cancorder command in the code blocks of the README and
    docs/: `cancorder ...` (any path to it: .venv/bin/cancorder, ./cancorder, sudo ...) and
    `make run ARGS="..."`."""
    found = []
    for path in PAGES:
        for number, line in code_lines(_read(path)):
            argv = words(line)
            if not argv:
                continue
            command, args = program(argv)
            where = f"{_name(path)}:{number}: {line}"
            if command and os.path.basename(command) == "cancorder":
                found.append((where, args))
            elif command == "make":
                found += [(where, shlex.split(arg[len("ARGS="):])) for arg in args
                          if arg.startswith("ARGS=")]
    return found


def parse_error(args):
    """What the real parser says of these arguments: None when they parse."""
    parser = cli.build_parser()
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            parser.parse_args(args)
    except USER_ERRORS as exc:
        return f"error: {exc}"
    except SystemExit as exc:  # --help, --version: printed, then exit 0
        return None if exc.code in (0, None) else f"exit {exc.code}"
    return None


def test_every_cancorder_line_in_the_docs_parses():
    lines = cancorder_lines()
    assert len(lines) > 30, "the code blocks were not found: the extractor is broken"
    failures = [f"{where}\n    {error}" for where, args in lines
                for error in [parse_error(args)] if error]
    assert not failures, "\n".join(failures)


def test_a_renamed_flag_fails_the_check():
    """The check is the parser's: a flag a page would spell otherwise is refused."""
    assert parse_error(["serve", "-i", "slcan", "-c", "/dev/ttyACM0", "--bitrate", "500k"]) is None
    assert "unrecognized arguments: --bit-rate" in parse_error(
        ["serve", "-i", "slcan", "-c", "/dev/ttyACM0", "--bit-rate", "500k"])


def test_the_readme_has_an_example_of_every_command():
    """Each of cli.COMMANDS (the modules of the subcommands) runs in some README example."""
    shown = set()
    for where, args in cancorder_lines():
        if where.startswith("README.md:") and args:
            func = getattr(cli.build_parser().parse_args(args), "func", None)
            shown.add(func.__module__.rpartition(".")[2] if func else None)
    missing = set(cli.COMMANDS) - shown
    assert not missing, f"the README shows no example of: {sorted(missing)}"


def python_commands():
    """(where, program, arguments) of every command run with a Python interpreter, in code
    blocks and in `inline code`, in the README and docs/."""
    found = []
    for path in PAGES:
        text = _read(path)
        lines = [(f"{_name(path)}:{number}: {line}", line) for number, line in code_lines(text)]
        lines += [(f"{_name(path)}: `{span}`", span) for span in inline_code(text)]
        for where, line in lines:
            argv = words(line)
            if not argv:
                continue
            command, args = program(argv)
            if command and re.fullmatch(r"python[0-9.]*", os.path.basename(command)):
                found.append((where, command, args))
    return found


def test_every_python_command_in_the_docs_uses_the_venv():
    """A project script run by another interpreter (`python tools/fuzz_socketcand.py`) lacks
    cancorder's dependencies; only making a venv (`python3 -m venv DIR`) needs no venv."""
    commands = python_commands()
    assert len(commands) > 10, "no Python commands found: the extractor is broken"
    wrong = [where for where, command, args in commands
             if command != VENV_PYTHON and args[:2] != ["-m", "venv"]]
    assert not wrong, "run these with .venv/bin/python:\n" + "\n".join(wrong)


def test_the_readme_is_short():
    with open(README, encoding="utf-8") as f:
        assert len(f.readlines()) < 300


def slug(heading):
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces made dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path):
    found, seen = set(), {}
    text = re.sub(r"^\s*```.*?^\s*```", "", _read(path), flags=re.S | re.M)
    for line in text.split("\n"):
        match = re.match(r"#{1,6} (.*)", line)
        if match:
            base = slug(match.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found | set(re.findall(r'<a id="([^"]+)"></a>', text))  # the README's moved sections


def links(path):
    """Every relative link target of a page (outside code and HTML comments)."""
    text = re.sub(r"<!--.*?-->", "", _read(path), flags=re.S)
    text = re.sub(r"^\s*```.*?^\s*```", "", text, flags=re.S | re.M)
    return [target for target in re.findall(r"\]\(([^)\s]+)\)", text)
            if not re.match(r"[a-z]+:", target)]


@pytest.mark.parametrize("path", PAGES, ids=_name)
def test_every_link_lands_on_a_file_and_a_heading(path):
    broken = []
    for target in links(path):
        file, _, anchor = target.partition("#")
        goal = os.path.normpath(os.path.join(os.path.dirname(path), file)) if file else path
        if not os.path.exists(goal):
            broken.append(f"{target}: no such file")
        elif anchor and goal.endswith(".md") and anchor not in anchors(goal):
            broken.append(f"{target}: no such heading in {_name(goal)}")
    assert not broken, f"{_name(path)}: " + "; ".join(broken)


def test_every_docs_page_is_linked_from_the_readme():
    linked = {os.path.normpath(os.path.join(ROOT, target.partition("#")[0]))
              for target in links(README)}
    assert DOCS, "no docs/ pages found"
    assert not [_name(page) for page in DOCS if page not in linked]


@pytest.mark.parametrize("tool", ["fuzz_socketcand.py", "fuzz_parsers.py", "fuzz_gvret.py"])
def test_a_fuzzer_run_without_atheris_says_how_to_run_it(tmp_path, tool):
    """`python tools/fuzz_socketcand.py`, as the README once said, ran an interpreter without
    atheris: a traceback. Now one line names the venv's interpreter (atheris hidden here by a
    module of that name that cannot be imported, first on the path)."""
    (tmp_path / "atheris.py").write_text("raise ImportError('not installed here')\n")
    env = cancorder_env()
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", ROOT)])
    run = subprocess.run([sys.executable, os.path.join("tools", tool), "-runs=1"], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode != 0
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: atheris is not installed"), run.stderr
    assert ".venv/bin/python" in lines[0]
