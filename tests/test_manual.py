"""The manual page (`cancorder man`) and the completion scripts (`cancorder completion`) hold
every flag of every subcommand: both are made from the parser, so neither can go stale."""
import argparse
import os
import re
import shutil
import subprocess
import sys
import zipfile

from cancorder import __version__
from cancorder.cli import build_parser

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAG = re.compile(r"(?<![\w-])(--?[A-Za-z0-9][\w-]*)")


def _commands(parser=None, prog="cancorder"):
    """(prog, its flags) for the main command and every subcommand, nested ones too (service
    install); an alias (toucan for touCAN) is the same parser, listed once."""
    parser = parser or build_parser()
    yield prog, {option for action in parser._actions for option in action.option_strings
                 if not isinstance(action, argparse._HelpAction)}
    seen = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                if id(sub) not in seen:
                    seen.add(id(sub))
                    yield from _commands(sub, f"{prog} {name}")


COMMANDS = dict(_commands())


def _cancorder(*args):
    done = subprocess.run([sys.executable, "-m", "cancorder", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return done.stdout


def test_the_parser_walk_sees_every_subcommand():
    assert {"cancorder serve", "cancorder touCAN", "cancorder mock-uds", "cancorder dump",
            "cancorder service install", "cancorder service show", "cancorder man",
            "cancorder completion"} <= set(COMMANDS)
    assert {"--record", "--mqtt-password-file", "--bus-name"} <= COMMANDS["cancorder serve"]


def _page_sections(page):
    """prog -> the flags the page lists (the .TP items) in that command's sections."""
    text = re.sub(r"\\f[BRI]|\\[,/&]", "", page).replace("\\-", "-")
    sections, prog, lines = {}, "cancorder", text.split("\n")
    for line, after in zip(lines, lines[1:] + [""]):
        heading = re.match(r"\.SH .*'(cancorder[^']*)'", line)
        if heading:
            prog = heading.group(1)
        elif line == ".TP":
            sections.setdefault(prog, set()).update(FLAG.findall(after))
    return sections


def test_the_manual_page_lists_every_flag_of_every_subcommand():
    page = _cancorder("man")
    assert page.startswith(".TH CANCORDER \"1\"")
    assert "\n.SH NAME\ncancorder \\- CAN bus logger proxy\n" in page
    listed = _page_sections(page)
    missing = {prog: sorted(flags - listed.get(prog, set()))
               for prog, flags in COMMANDS.items() if flags - listed.get(prog, set())}
    assert missing == {}


def test_the_manual_page_reads_cleanly_in_man():
    """man renders it without a warning (help text that wrapped to a line starting with "."
    would be read as a request)."""
    page = _cancorder("man")
    env = {key: value for key, value in os.environ.items() if key != "MAN_KEEP_FORMATTING"}
    shown = subprocess.run(["man", "-l", "-"], input=page, capture_output=True, text=True,
                           env={**env, "MANWIDTH": "100"}, timeout=60)
    assert shown.returncode == 0
    assert shown.stderr == ""
    # the words as a reader sees them: no overstrike (bold), justified spaces as one
    text = re.sub(r"\s+", " ", re.sub(".\b", "", shown.stdout))
    assert "cancorder service install" in text
    assert "only this channel of a multi-channel file" in text


def _bash_completes(script, words):
    """What bash's completion function offers after ``words`` (the last one being completed)."""
    driver = (f"source /dev/stdin; COMP_WORDS=({' '.join(words)}); "
              f"COMP_CWORD={len(words) - 1}; COMP_LINE='{' '.join(words)}'; "
              "COMP_POINT=${#COMP_LINE}; "
              "$(complete -p cancorder | sed -E 's/.* -F ([^ ]+) .*/\\1/') cancorder; "
              "printf '%s\\n' \"${COMPREPLY[@]}\"")
    done = subprocess.run(["bash", "--norc", "--noprofile", "-c", driver], input=script,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


def test_bash_completes_every_flag_of_every_subcommand():
    script = _cancorder("completion", "bash")
    missing = {}
    for prog, flags in COMMANDS.items():
        offered = _bash_completes(script, prog.split() + ["-"])
        if flags - offered:
            missing[prog] = sorted(flags - offered)
    assert missing == {}
    assert {"serve", "mock-uds", "man", "completion"} <= _bash_completes(script,
                                                                         ["cancorder", ""])
    assert _bash_completes(script, ["cancorder", "completion", ""]) == {"bash", "zsh"}


def test_zsh_script_declares_every_flag_of_every_subcommand():
    """zsh is not installed here: the script's per-command option tables are read instead."""
    script = _cancorder("completion", "zsh")
    assert script.startswith("#compdef cancorder\n")
    missing = {}
    for prog, flags in COMMANDS.items():
        name = "_".join(re.sub(r"\W", "_", word) for word in prog.split())
        table = re.search(rf"^_shtab_{name}_options=\(\n(.*?)\n\)", script, re.M | re.S)
        declared = set()
        for entry in (table.group(1).split("\n") if table else []):
            spec = entry.strip().split("[", 1)[0]  # "--fd[..." or {-i,--interface}"[..."
            declared.update(FLAG.findall(spec))
        if flags - declared:
            missing[prog] = sorted(flags - declared)
    assert missing == {}


def test_completion_of_an_unknown_shell_is_one_error_line():
    done = subprocess.run([sys.executable, "-m", "cancorder", "completion", "fish"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("error: argument shell: invalid choice: 'fish'")
    assert len(done.stderr.splitlines()) == 1


def _copy_of_the_source(to):
    for name in ("setup.py", "pyproject.toml", "README.md", "MANIFEST.in"):
        shutil.copy2(os.path.join(ROOT, name), to)
    shutil.copytree(os.path.join(ROOT, "cancorder"), os.path.join(to, "cancorder"),
                    ignore=shutil.ignore_patterns("__pycache__", "*.so"))


def test_the_wheel_installs_the_manual_page_made_at_build_time(tmp_path):
    """The page `man cancorder` finds after a pip install (share/man/man1 of the environment) is
    made by the build from the source being built: the one `cancorder man` prints."""
    source = tmp_path / "source"
    source.mkdir()
    _copy_of_the_source(source)
    # a build environment holds the build tools, not cancorder's run-time dependencies
    # (`make exe` builds with --no-build-isolation in a venv of build tools): here they fail
    absent = tmp_path / "absent"
    for module in ("rich", "can", "zeroconf", "serial", "gs_usb", "usb", "paho",
                   "prometheus_client", "cantools", "shtab"):
        (absent / module).mkdir(parents=True)
        (absent / module / "__init__.py").write_text(
            f"raise ImportError('{module} is not in a build environment')\n")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "-w", str(tmp_path / "wheels"), str(source)],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "CANCORDER_SKIP_CYTHON": "1", "CANCORDER_REQUIRE_CYTHON": "0",
             "PYTHONPATH": os.pathsep.join([str(absent), os.environ.get("PYTHONPATH", "")])})
    assert built.returncode == 0, built.stderr
    [wheel] = os.listdir(tmp_path / "wheels")
    with zipfile.ZipFile(tmp_path / "wheels" / wheel) as archive:
        page = archive.read(f"cancorder-{__version__}.data/data/share/man/man1/"
                            "cancorder.1").decode()
    assert page == _cancorder("man")

