"""The service files shipped inside the package, and putting them in place.

``files/`` holds the systemd template unit, the udev rules, the launchd plist and an example
config; they are package data, so a pip install and the standalone executable both carry them.
``install`` writes them under a root folder (``/`` on a real machine, a temporary folder in the
tests) with the program's own path filled in, and never overwrites an existing config.

The unit hides the home folders and /tmp from the service and lets it write in a few folders
only, as a user of its own (``Sandbox``, read from the unit's own text): ``install`` refuses a
program, or a path of the config, that the service could not reach, and says what to do.
"""
import dataclasses
import json
import os
import shutil
import sys
from importlib import resources

from .. import argtypes
from ..errors import UsageError

UNIT = "cancorder@.service"
UDEV_RULES = "60-cancorder.rules"
PLIST = "org.cancorder.plist"
EXAMPLE = "example.toml"
SHIPPED_PROGRAM = "/usr/local/bin/cancorder"


def shipped(name):
    """The text of one shipped file."""
    return resources.files(__package__).joinpath("files", name).read_text(encoding="utf-8")


def program():
    """The command that starts this very cancorder, as absolute paths."""
    if getattr(sys, "frozen", False):  # the PyInstaller executable
        return [os.path.abspath(sys.executable)]
    script = os.path.join(os.path.dirname(os.path.abspath(sys.executable)), "cancorder")
    if os.access(script, os.X_OK):
        return [script]
    found = shutil.which("cancorder")
    if found:
        return [os.path.abspath(found)]
    return [os.path.abspath(sys.executable), "-m", "cancorder"]


#: where docs/production.md's set-up puts cancorder (the advice when the program is hidden)
PRODUCTION_SETUP = ("sudo /usr/bin/python3 -m venv /opt/cancorder && sudo /opt/cancorder/bin/pip "
                    "install . && sudo /opt/cancorder/bin/cancorder service install {name} "
                    "(docs/production.md, \"Running it as a service\")")


@dataclasses.dataclass
class Sandbox:
    """What the unit lets the service see and write (from its text, the one home of these
    facts): ``hidden`` folder -> the setting that hides it; ``writable`` folders;
    ``own_user``: DynamicUser=, so what it reads must be open to every user."""

    hidden: dict
    writable: list
    own_user: bool

    @classmethod
    def of_unit(cls, text):
        settings = {}
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep and not line.startswith(("#", ";")):
                settings.setdefault(key.strip(), []).extend(value.split())
        on = {"yes", "true", "on", "1"}
        hidden = {}
        if set(settings.get("ProtectHome", [])) & (on | {"tmpfs"}):  # read-only: still seen
            hidden.update({folder: "ProtectHome=" for folder in ("/home", "/root", "/run/user")})
        if set(settings.get("PrivateTmp", [])) & on:  # its own, empty /tmp: gone at the stop
            hidden.update({folder: "PrivateTmp=" for folder in ("/tmp", "/var/tmp")})
        writable = [path.lstrip("-") for path in settings.get("ReadWritePaths", [])]
        writable += ["/var/lib/" + name for name in settings.get("StateDirectory", [])]
        return cls(hidden, list(dict.fromkeys(writable)),
                   own_user=bool(set(settings.get("DynamicUser", [])) & on))

    def cannot_read(self, path):
        """Why the service cannot read (or run) ``path``, or None. Relative paths are from its
        working folder, /."""
        path = os.path.join("/", path)
        hidden = self._hidden(path)
        if hidden:
            return hidden
        if self.own_user and os.path.exists(path):
            closed = _closed_to_others(os.path.realpath(path))
            if closed:
                return (f"the service runs as a user of its own (DynamicUser=), and {closed}: "
                        "make it readable by every user (o+r, o+x on its folders)")
        return None

    def cannot_write(self, folder):
        """Why the service cannot write in ``folder``, or None."""
        folder = os.path.join("/", folder)
        hidden = self._hidden(folder)
        if hidden:
            return hidden
        real = os.path.realpath(folder)
        if not any(_inside(real, allowed) for allowed in self.writable):
            return (f"the service may write only in {', '.join(self.writable)} "
                    "(ProtectSystem=strict)")
        return None

    def _hidden(self, path):
        for candidate in dict.fromkeys([path, os.path.realpath(path)]):
            for folder, setting in self.hidden.items():
                if candidate == folder:
                    return f"the unit hides {folder} ({setting}yes)"
                if _inside(candidate, folder):
                    return f"{candidate} is in {folder}, which the unit hides ({setting}yes)"
        return None


def _inside(path, folder):
    return os.path.commonpath([path, folder]) == folder


def _closed_to_others(path):
    """What keeps a user other than the owner from reading ``path`` (None: nothing)."""
    import stat

    parts = path.split(os.sep)
    for i in range(2, len(parts)):
        folder = os.sep.join(parts[:i]) or os.sep
        if not os.stat(folder).st_mode & stat.S_IXOTH:
            return f"{folder} is closed to other users"
    mode = os.stat(path).st_mode
    if not mode & stat.S_IROTH or (stat.S_ISDIR(mode) and not mode & stat.S_IXOTH):
        return f"{path} is not readable by other users"
    return None


def program_files(command):
    """The files starting ``command`` needs: the program, the interpreter of its ``#!`` line,
    and for this Python the interpreter, its library and cancorder's package."""
    files = [command[0]]
    if getattr(sys, "frozen", False):
        return files
    try:
        with open(command[0], "rb") as handle:
            first = handle.readline(512)
    except OSError:
        first = b""
    if first.startswith(b"#!") and first[2:].split():
        files.append(os.fsdecode(first[2:].split()[0]))
    files += [sys.executable, sys.base_prefix, sys.prefix,
              os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]
    return list(dict.fromkeys(files))


def check_reachable(name, command, configured, unit):
    """UsageError unless the service of ``unit`` can start ``command`` and use every path of
    ``configured`` ((where, key, value, argtypes path type) each, _config.paths)."""
    sandbox = Sandbox.of_unit(unit)
    for path in program_files(command):
        why = sandbox.cannot_read(path)
        if why:
            if getattr(sys, "frozen", False):
                todo = (f"copy it where the service can run it: sudo install -m 755 {command[0]} "
                        f"/usr/local/bin/cancorder && sudo /usr/local/bin/cancorder service "
                        f"install {name}")
            else:
                todo = "install cancorder outside the home folders, e.g. " + \
                    PRODUCTION_SETUP.format(name=name)
            needs = "" if path == command[0] else f" (it needs {path})"
            raise UsageError(f"the service could not start {command[0]}{needs}: {why}; {todo}")
    for where, key, value, kind in configured:
        if kind is argtypes.read_path:
            why = sandbox.cannot_read(value)
            todo = "move it outside the home folders and /tmp"
        else:
            folder = value if kind is argtypes.write_folder else _fixed_folder(value)
            why = sandbox.cannot_write(folder)
            todo = (f"use a folder under {sandbox.writable[0]}, or add {folder} to "
                    f"ReadWritePaths= in a drop-in (systemctl edit cancorder@{name})")
        if why:
            raise UsageError(f"{where}: {key} {json.dumps(value)}: the service could not use "
                             f"it: {why}; {todo}")


def _fixed_folder(pattern):
    """The folder of a file name pattern up to its first field (strftime %, or {name})."""
    parts = os.path.join("/", pattern).split("/")[:-1]
    fixed = []
    for part in parts:
        if "%" in part or "{" in part:
            break
        fixed.append(part)
    return "/".join(fixed) or "/"


def unit_text(command=None):
    command = command or program()
    return shipped(UNIT).replace(SHIPPED_PROGRAM, " ".join(command), 1)


def plist_text(name, config_path, command=None):
    command = command or program()
    text = shipped(PLIST).replace("@NAME@", name).replace("@CONFIG@", config_path)
    text = text.replace("@USER@", _login_user())
    text = text.replace("<string>@CANCORDER@</string>", "\n        ".join(
        f"<string>{part}</string>" for part in command))
    return text


@dataclasses.dataclass
class Installed:
    written: list  # paths written
    kept: list  # paths that existed and were left alone
    next_steps: list  # commands for the user to run


def install(name, root="/", platform=None, config=None, check_config=None):
    """Write the service files for instance ``name`` under ``root``; ``check_config(path)``
    refuses a broken ``config`` (a ConfigError) before anything is written and returns its
    paths (_config.paths). Installing for this machine (``root`` /), a program or a path the
    unit would hide from the service is refused too (under another root the files are staged
    for a package, whose layout decides)."""
    if not name or not all(c.isalnum() or c in "-_." for c in name):
        raise UsageError(f"service name {name!r}: letters, digits, '-', '_' or '.' only "
                         "(it names /etc/cancorder/NAME.toml and the unit instance)")
    platform = platform or ("macos" if sys.platform == "darwin" else "linux")
    configured = []
    if config is not None:
        # a broken config is refused before anything is written (its sources built, not opened)
        configured = check_config(config) or []
    done = Installed([], [], [])
    if platform == "linux":
        if os.path.abspath(root) == "/":  # under another root: staged for a package
            check_reachable(name, program(), configured, shipped(UNIT))
        config_path = f"/etc/cancorder/{name}.toml"
        _write(root, "/etc/systemd/system/" + UNIT, unit_text(), done)
        _write(root, "/etc/udev/rules.d/" + UDEV_RULES, shipped(UDEV_RULES), done)
        _write_config(root, config_path, config, done)
        done.next_steps = [
            "udevadm control --reload-rules && udevadm trigger",
            "systemctl daemon-reload",
            f"cancorder serve --config {config_path} --check",
            f"systemctl enable --now cancorder@{name}",
            f"journalctl -u cancorder@{name} -f",
        ]
    elif platform == "macos":
        config_path = f"/usr/local/etc/cancorder/{name}.toml"
        plist = f"/Library/LaunchDaemons/org.cancorder.{name}.plist"
        _write(root, plist, plist_text(name, config_path), done)
        _write_config(root, config_path, config, done)
        done.next_steps = [
            f"sudo mkdir -p /usr/local/var/log/cancorder && sudo chown {_login_user()} "
            "/usr/local/var/log/cancorder",
            f"sudo launchctl bootstrap system {plist}",
        ]
    else:
        raise UsageError(f"--platform {platform}: use linux or macos")
    return done


def _login_user():
    """The user the launchd job runs as: whoever ran ``sudo cancorder service install``."""
    import getpass

    user = os.environ.get("SUDO_USER") or getpass.getuser()
    return user if user != "root" else "nobody"


def _write_config(root, path, source, done):
    target = _under(root, path)
    if os.path.exists(target):
        done.kept.append(target)
        return
    text = open(source, encoding="utf-8").read() if source else shipped(EXAMPLE)
    _write(root, path, text, done)


def _write(root, path, text, done):
    target = _under(root, path)
    try:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        raise UsageError(f"cannot write {target}: {exc.strerror or exc}"
                         + (" (run as root, or give --root)" if exc.errno == 13 else "")) \
            from None
    done.written.append(target)


def _under(root, path):
    return os.path.join(root, path.lstrip("/"))
