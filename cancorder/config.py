"""``cancorder serve --config FILE.toml``: several buses in one process, described in TOML.

A ``[[bus]]`` table holds the flags of one bus. Every key is the long name of a flag of the
bus's serving command (``--data-bitrate`` is ``data_bitrate``; ``--no-zeroconf`` may also be
written ``zeroconf = false``), and its value goes through that flag's own argparse type and
choices: the command-line parsers (commands/_server_args.py and the commands' own) are the only
validators, so a flag added to a command is a config key without a line of code here. The
``source`` key picks the command whose flags the table holds (python-can ``serve``, ``toucan``,
``mock-uds``, ``replay``, ``relay``). Keys at the top level are defaults for every bus that has that flag.

Every mistake is one line naming the file, the bus and the key (ConfigError, exit 2).
"""
import argparse
import dataclasses
import json
import os
import re

from .errors import ConfigError, UsageError

#: source kind -> (serving subcommand, defaults it implies)
SOURCE_KINDS = {
    "python-can": ("serve", {}),
    "slcan": ("serve", {"interface": "slcan"}),
    "toucan": ("touCAN", {}),
    "mock-uds": ("mock-uds", {}),
    "replay": ("replay", {}),
    "relay": ("relay", {}),  # a remote bus from an MQTT broker (url = "mqtt://...")
}
DEFAULT_SOURCE = "python-can"
#: sources that own a piece of hardware: two buses may not share its channel
ADAPTER_COMMANDS = ("serve", "touCAN")

#: flags of the serving commands that belong to the process, not to one bus
PROCESS_FLAGS = frozenset({"help", "debug", "config", "check", "metrics", "log_format",
                           "output", "version", "verbose", "stats"})
#: process flags a config file may set at its top level (verbose and stats reach every bus)
TOP_PROCESS_KEYS = ("log_format", "verbose", "stats")
#: keys of a bus table that are no flag
BUS_KEYS = ("name", "source")
#: keys of the top level that are no bus default
TOP_KEYS = ("bus", "metrics", "log_format", "verbose", "stats")
METRICS_KEYS = ("listen",)
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")


@dataclasses.dataclass
class BusConfig:
    index: int  # 1-based, as people count the [[bus]] tables
    name: str
    source: str  # the kind as written (python-can, slcan, toucan, mock-uds, replay)
    command: str  # the serving subcommand whose flags the table holds
    args: argparse.Namespace  # exactly what the command line would have produced
    keys: dict  # key -> resolved value of the keys the file set
    written: dict = dataclasses.field(default_factory=dict)  # key -> the value as written
    flags: dict = dataclasses.field(repr=False, default_factory=dict)  # key -> (action, inverted)

    named: bool = True  # False: the name is the default bus<index>

    @property
    def label(self):
        return f'bus "{self.name}"' if self.named else f"bus {self.index}"


@dataclasses.dataclass
class ProcessConfig:
    path: str
    buses: list
    metrics: tuple = None  # (host, port) or None
    log_format: str = None
    verbose: bool = False
    stats: bool = False


def load(path, parsers=None):
    """Read and resolve a config file; raises ConfigError (one line) on any mistake."""
    document = _read_toml(path)
    return resolve(document, path, parsers)


def _read_toml(path):
    if _tomllib is None:
        raise UsageError("--config needs tomli on Python before 3.11: pip install tomli")
    try:
        with open(path, "rb") as handle:
            return _tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"config {path}: cannot read it ({exc.strerror or exc})") from None
    except _tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path}: not valid TOML: {exc}") from None


try:
    import tomllib as _tomllib
except ImportError:  # Python < 3.11
    try:
        import tomli as _tomllib
    except ImportError:
        _tomllib = None


def resolve(document, path, parsers=None):
    """Turn a parsed TOML document into a ProcessConfig (``parsers``: command -> parser)."""
    parsers = parsers if parsers is not None else serving_parsers()
    where = f"config {path}"
    document = {_key(k): v for k, v in document.items()}
    buses_raw = document.get("bus", [])
    if not isinstance(buses_raw, list) or not all(isinstance(b, dict) for b in buses_raw):
        raise ConfigError(f"{where}: bus must be [[bus]] tables, one per bus")
    if not buses_raw:
        raise ConfigError(f"{where}: no [[bus]] table: add one per bus, e.g. [[bus]] "
                          'interface = "socketcan" channel = "can0"')
    defaults = {_key(k): v for k, v in document.items() if k not in TOP_KEYS}
    known_anywhere = set()
    for command, _ in SOURCE_KINDS.values():
        if command in parsers:
            known_anywhere.update(_flag_table(parsers[command]))
    for key in defaults:
        if key in BUS_KEYS[:1]:
            raise ConfigError(f"{where}: name belongs in a [[bus]] table, not at the top level")
        if key not in known_anywhere and key != "source":
            raise ConfigError(f"{where}: unknown key {key}{_suggest(key, known_anywhere)}")
    buses = [_resolve_bus(i + 1, raw, defaults, where, parsers) for i, raw in
             enumerate(buses_raw)]
    _check_distinct(buses, where)
    config = ProcessConfig(path=path, buses=buses)
    config.metrics = _metrics(document.get("metrics"), where, parsers["serve"])
    for key in TOP_PROCESS_KEYS:
        if key in document:
            setattr(config, key, _process_value(parsers["serve"], key, document[key], where))
    for bus in buses:  # what the command line gives every command
        bus.args.verbose, bus.args.stats = config.verbose, config.stats
    if config.metrics:
        for bus in buses:
            if bus.keys.get("port") == config.metrics[1]:
                raise ConfigError(f"{where}, {bus.label}: port {config.metrics[1]} is also the "
                                  "metrics port: choose another")
    return config


def _resolve_bus(index, raw, defaults, where, parsers):
    raw = {_key(k): v for k, v in raw.items()}
    given_name = raw.get("name")
    label = f'bus "{given_name}"' if isinstance(given_name, str) else f"bus {index}"
    here = f"{where}, {label}"
    source = raw.get("source", defaults.get("source", DEFAULT_SOURCE))
    if source not in SOURCE_KINDS:
        raise ConfigError(f"{here}: source {_shown(source)}: choose one of "
                          + ", ".join(SOURCE_KINDS))
    command, implied = SOURCE_KINDS[source]
    parser = parsers.get(command)
    if parser is None:
        raise ConfigError(f"{here}: source {_shown(source)} is not available in this build")
    table = _flag_table(parser)
    args = _defaults(parser)
    keys = {}
    values = dict(implied)
    values.update({k: v for k, v in defaults.items() if k in table})
    values.update({k: v for k, v in raw.items() if k not in BUS_KEYS})
    for key in raw:
        if key not in table and key not in BUS_KEYS:
            reason = ("belongs to the whole process: put it at the top level"
                      if key in PROCESS_FLAGS else f"is not a flag of the {source} source"
                      + _suggest(key, table))
            raise ConfigError(f"{here}: {key} {reason}")
    for key, value in values.items():
        action, inverted = table[key]
        _apply(parser, args, action, inverted, key, value, here)
        keys[key] = getattr(args, action.dest)
    for action in parser._actions:
        if action.required and getattr(args, action.dest, None) in (None, []):
            raise ConfigError(f"{here}: {_key_of(action)} is required for the {source} source")
    name = given_name if given_name is not None else f"bus{index}"
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ConfigError(f"{here}: name {_shown(name)}: letters, digits, '.', '_', ':' or "
                          "'-', at most 64 (it is the metrics label and the log field)")
    return BusConfig(index=index, name=name, source=source, command=command, args=args,
                     keys=keys, written=values, flags=table, named=given_name is not None)


def _check_distinct(buses, where):
    seen_names, seen_ports, seen_channels, seen_spools = {}, {}, {}, {}
    for bus in buses:
        here = f"{where}, {bus.label}"
        spool = getattr(bus.args, "mqtt_spool", None)
        if spool:
            folder = os.path.realpath(spool)
            if folder in seen_spools:
                raise ConfigError(f"{here}: mqtt_spool {_shown(spool)} is also "
                                  f"{seen_spools[folder].label}'s: every bus needs its own "
                                  "spool folder")
            seen_spools[folder] = bus
        if bus.name in seen_names:
            raise ConfigError(f"{where}: bus {bus.index} and bus {seen_names[bus.name]} are "
                              f"both named {_shown(bus.name)}: names must differ")
        seen_names[bus.name] = bus.index
        port = getattr(bus.args, "port", None)
        if port is not None:
            if port in seen_ports:
                raise ConfigError(f"{here}: port {port} is also {seen_ports[port].label}'s: "
                                  "every bus needs its own port (or leave port out)")
            seen_ports[port] = bus
        if bus.command in ADAPTER_COMMANDS and getattr(bus.args, "channel", None) is not None:
            identity = (bus.command, getattr(bus.args, "interface", None), str(bus.args.channel))
            if identity in seen_channels:
                raise ConfigError(f"{here}: channel {_shown(bus.args.channel)} is also "
                                  f"{seen_channels[identity].label}'s: one adapter channel "
                                  "feeds one bus")
            seen_channels[identity] = bus
    autos = [bus for bus in buses if getattr(bus.args, "auto", False)]
    if len(autos) > 1:
        raise ConfigError(f"{where}, {autos[1].label}: auto on more than one bus would pick the "
                          "same adapter twice: give the others an interface and channel")


def _metrics(value, where, parser):
    if value is None:
        return None
    if isinstance(value, dict):
        for key in value:
            if key not in METRICS_KEYS:
                raise ConfigError(f"{where}, [metrics]: unknown key {key} (the table has "
                                  + ", ".join(METRICS_KEYS) + ")")
        if "listen" not in value:
            raise ConfigError(f'{where}, [metrics]: listen is missing, e.g. listen = '
                              '"127.0.0.1:9100"')
        return _process_value(parser, "metrics", value["listen"], f"{where}, [metrics]",
                              shown_key="listen")
    return _process_value(parser, "metrics", value, where)


def _process_value(parser, key, value, where, shown_key=None):
    table = _flag_table(parser, process=True)
    action, inverted = table[key]
    args = _defaults(parser)
    _apply(parser, args, action, inverted, shown_key or key, value, where)
    return getattr(args, action.dest)


# ---- flags as keys ----

def serving_parsers():
    """command name -> its argparse parser, for every serving command of this build."""
    from .cli import build_parser

    root = build_parser()
    for action in root._actions:
        if isinstance(action, argparse._SubParsersAction):
            return {name: parser for name, parser in action.choices.items()
                    if name in {command for command, _ in SOURCE_KINDS.values()}}
    return {}


def _flag_table(parser, process=False):
    """key -> (action, inverted) for every flag of ``parser`` a bus table may hold."""
    table = {}
    for action in parser._actions:
        key = _key_of(action)
        if key is None or (key in PROCESS_FLAGS) != process:
            continue
        table[key] = (action, False)
        if key.startswith("no_") and isinstance(action, argparse._StoreConstAction):
            table.setdefault(key[3:], (action, True))  # zeroconf = false for --no-zeroconf
    return table


def _key_of(action):
    if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
        return None
    longs = [s for s in action.option_strings if s.startswith("--")]
    if action.option_strings and not longs:
        return None
    text = longs[0][2:] if longs else action.dest
    return _key(text)


def _key(text):
    return str(text).replace("-", "_")


def _defaults(parser):
    """The Namespace parse_args would give for no flags at all."""
    args = argparse.Namespace(**parser._defaults)
    for action in parser._actions:
        if action.dest is argparse.SUPPRESS or action.default is argparse.SUPPRESS:
            continue
        default = action.default
        if isinstance(default, str) and action.type is not None:
            default = action.type(default)
        elif isinstance(default, list):
            default = list(default)
        setattr(args, action.dest, default)
    return args


def _apply(parser, args, action, inverted, key, value, here):
    """One TOML value as the flag would be given: each item through the flag's type and
    choices, then the flag's own argparse action (store, append, a custom one such as
    --filter's) called on ``args`` as argparse calls it. A list for a repeatable flag is the
    flag given once per item; for a flag of several values (nargs +), its values."""
    option = action.option_strings[-1] if action.option_strings else key
    if action.nargs == 0:  # store_true / store_false / store_const
        if not isinstance(value, bool):
            raise ConfigError(f"{here}: {key} {_shown(value)}: expected true or false")
        if value != inverted:
            action(parser, args, [], option)
        return
    items = value if isinstance(value, list) else [value]
    if action.nargs in ("+", "*"):
        if action.nargs == "+" and not items:
            raise ConfigError(f"{here}: {key} is empty: give at least one value")
        action(parser, args, [_one(action, key, item, here) for item in items], option)
        return
    if action.nargs not in (None, "?"):
        raise ConfigError(f"{here}: {key} cannot be set in a config file")
    if isinstance(value, list) and not isinstance(action, argparse._AppendAction):
        raise ConfigError(f"{here}: {key} {_shown(value)}: expected one value")
    for item in items:
        action(parser, args, _one(action, key, item, here), option)


def _one(action, key, value, here):
    if isinstance(value, (list, dict)):
        raise ConfigError(f"{here}: {key} {_shown(value)}: expected one value")
    text = ("true" if value else "false") if isinstance(value, bool) else str(value)
    converted = text
    if action.type is not None:
        try:
            converted = _typed(action.type, value, text)
        except argparse.ArgumentTypeError as exc:
            reason = str(exc)
            if reason.startswith(f"{text}: "):
                reason = reason[len(text) + 2:]
            raise ConfigError(f"{here}: {key} {_shown(value)}: {reason}") from None
        except (TypeError, ValueError):
            what = getattr(action.type, "__name__", "value")
            raise ConfigError(f"{here}: {key} {_shown(value)}: expected {_A.get(what, what)}") \
                from None
    if action.choices is not None and converted not in action.choices:
        raise ConfigError(f"{here}: {key} {_shown(value)}: choose one of "
                          + ", ".join(map(str, action.choices)))
    return converted


def _typed(convert, value, text):
    """A TOML integer is a number, however the flag spells numbers: the hex-typed flags
    (padding, CAN ids) read "204" as 0x204, so it is offered in the one spelling every integer
    parser reads right (0x...) first, and as decimal text to the parsers that refuse that
    (floats, sizes)."""
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return convert(hex(value))
        except (argparse.ArgumentTypeError, TypeError, ValueError):
            pass
    return convert(text)


_A = {"int": "a whole number", "float": "a number"}


def _shown(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, dict)):
        return "a list" if isinstance(value, list) else "a table"
    return str(value)


def _suggest(key, known):
    import difflib

    close = difflib.get_close_matches(key, sorted(known), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


# ---- the command line beside --config ----

def flags_given_beside(parser, args):
    """The bus flags given on the command line together with --config (they would be
    silently overridden or ambiguous, so they are refused)."""
    given = []
    defaults = _defaults(parser)
    for key, (action, inverted) in _flag_table(parser).items():
        if inverted:
            continue
        if getattr(args, action.dest, None) != getattr(defaults, action.dest, None):
            given.append(min((s for s in action.option_strings), key=len) or key)
    return given


def apply_command_line(config, args):
    """The process flags given beside --config win over the file."""
    if args.metrics:
        config.metrics = args.metrics
    config.verbose = config.verbose or args.verbose
    config.stats = config.stats or args.stats
    for bus in config.buses:
        bus.args.verbose, bus.args.stats = config.verbose, config.stats
    log_format = getattr(args, "log_format", None)
    if log_format:
        config.log_format = log_format
    elif config.log_format:
        from . import logs

        logs.setup(getattr(args, "debug", False), log_format=config.log_format)


# ---- from buses to Bus objects ----

def build_buses(config, check=False):
    """A server.Bus per [[bus]], each source made by its own command's ``source_from_args``
    (the command's own checks run too; their errors name the bus). With ``check``, a bus whose
    command would open hardware to build its source (``auto``) gets None."""
    import sys

    from .commands import _server_args as sa
    from .server import Bus

    buses = []
    for bus in config.buses:
        module = sys.modules[bus.args.func.__module__]
        if not hasattr(module, "source_from_args"):
            raise ConfigError(f"config {config.path}, {bus.label}: the {bus.source} source "
                              "cannot be a bus of a config file yet")
        if check and getattr(bus.args, "auto", False):
            buses.append(None)
            continue
        try:
            source = module.source_from_args(bus.args)
            # the serving flags' own checks (--mqtt's URL and files, --record's folder...)
            options = sa.bus_options(bus.args, module.PROCESS)
        except ConfigError:
            raise
        except UsageError as exc:
            raise ConfigError(f"config {config.path}, {bus.label}: {exc}") from None
        options.name = bus.name
        # verbose prints frames, except where -v means something else (mock-uds narrates)
        options.print_frames = config.verbose and getattr(module, "PRINTS_FRAMES", True)
        buses.append(Bus(source, options))
    return buses


# ---- --check ----

def describe(config, buses=None):
    """The resolved configuration as TOML (every key, defaults included)."""
    lines = [f"# {config.path}: {len(config.buses)} bus"
             + ("es" if len(config.buses) != 1 else "")]
    if config.metrics:
        host, port = config.metrics
        lines.append(f"metrics = {_toml(f'{host}:{port}' if host else str(port))}")
    if config.log_format:
        lines.append(f"log_format = {_toml(config.log_format)}")
    lines += [f"verbose = {_toml(config.verbose)}", f"stats = {_toml(config.stats)}"]
    for i, bus in enumerate(config.buses):
        lines += [""]
        if buses is not None:
            lines.append("# " + (buses[i].source.description if buses[i] is not None
                                 else "the first adapter that opens (auto)"))
        lines += ["[[bus]]", f"name = {_toml(bus.name)}", f"source = {_toml(bus.source)}"]
        for key, (action, inverted) in bus.flags.items():
            if inverted or (key.startswith("no_") and key[3:] in bus.flags):
                continue  # shown in its positive spelling
            value = getattr(bus.args, action.dest, None)
            if value is None or value == []:
                lines.append(f"# {key} not set")
            elif not isinstance(value, (str, int, float)):  # filters, --opt pairs: as written
                lines.append(f"{key} = {_toml(bus.written.get(key, value))}")
            else:
                lines.append(f"{key} = {_toml(value)}")
        for key, (action, inverted) in bus.flags.items():
            if inverted:
                lines.append(f"{key} = {_toml(getattr(bus.args, action.dest) == action.default)}")
    return "\n".join(lines)


def _toml(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    return json.dumps(str(value))
