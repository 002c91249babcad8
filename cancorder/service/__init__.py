"""The service files shipped inside the package, and putting them in place.

``files/`` holds the systemd template unit, the udev rules, the launchd plist and an example
config; they are package data, so a pip install and the standalone executable both carry them.
``install`` writes them under a root folder (``/`` on a real machine, a temporary folder in the
tests) with the program's own path filled in, and never overwrites an existing config.
"""
import dataclasses
import os
import shutil
import sys
from importlib import resources

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
    refuses a broken ``config`` (a ConfigError) before anything is written."""
    if not name or not all(c.isalnum() or c in "-_." for c in name):
        raise UsageError(f"service name {name!r}: letters, digits, '-', '_' or '.' only "
                         "(it names /etc/cancorder/NAME.toml and the unit instance)")
    platform = platform or ("macos" if sys.platform == "darwin" else "linux")
    if config is not None:
        # a broken config is refused before anything is written (its sources built, not opened)
        check_config(config)
    done = Installed([], [], [])
    if platform == "linux":
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
