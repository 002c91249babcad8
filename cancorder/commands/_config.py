"""``cancorder serve --config FILE.toml``: several buses in one process, described in TOML.

A ``[[bus]]`` table holds the flags of one bus: it becomes the argument list of that bus's
serving command and goes through that command's own ``parse_args``, so a flag added to a
command is a config key without a line of code here, and the command-line parsers are the only
validators. A key is the long name of a flag (``--data-bitrate`` is ``data_bitrate``; a
``--no-X`` switch may also be written ``X = false``), a positional argument by its name. The
``source`` key picks the command (the registry cli.build_parser gathers from the commands'
``SOURCES``). Keys at the top level are the process's flags (those its parser marks so) and
defaults for every bus that has that flag.

This module names no flag: what it knows of one comes from the parser (its ``flags``,
``process_flags`` and ``command_line_flags``, and each flag's public Action attributes).
Every mistake is one line naming the file, the bus and the key (ConfigError, exit 2).
"""
import argparse
import dataclasses
import json

from .. import argtypes
from ..argtypes import BUS_NAME
from ..errors import ConfigError, UsageError
from . import _server_args as sa

DEFAULT_SOURCE = "python-can"
#: keys of a bus table that are no flag
NAME_KEY, SOURCE_KEY = "name", "source"
BUS_KEYS = (NAME_KEY, SOURCE_KEY)
#: a process flag's value may also be written as a table of this one key ([metrics] listen = ...)
TABLE_KEY = "listen"
NAME_PATTERN = BUS_NAME


@dataclasses.dataclass
class BusConfig:
    index: int  # 1-based, as people count the [[bus]] tables
    name: str
    source: str  # the kind as written (python-can, slcan, toucan, mock-uds, replay, relay)
    command: str  # the serving subcommand whose flags the table holds
    args: argparse.Namespace  # exactly what the command line would have produced
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
    args: argparse.Namespace  # the process flags (the default source's parser's Namespace)
    written: dict = dataclasses.field(default_factory=dict)  # key -> the value as written
    flags: dict = dataclasses.field(repr=False, default_factory=dict)  # its keys, as BusConfig


def load(path, sources):
    """Read and resolve a config file (``sources``: cli.serving_sources()); raises ConfigError
    (one line) on any mistake."""
    document = _read_toml(path)
    return resolve(document, path, sources)


def check(path, sources):
    """Refuse a broken config file (ConfigError) without serving it: every bus's source is
    built, not opened. Returns the resolved config."""
    config = load(path, sources)
    build_buses(config, check=True)
    return config


def paths(config):
    """Every path the buses of a config give, as (where, key, value, what the process does
    with it: one of argtypes.PATH_TYPES), from the flags' own types: for the service
    installer, which checks that the unit lets the service see or write them."""
    found = []
    for bus in config.buses:
        for key, (action, inverted) in bus.flags.items():
            if inverted or action.type not in argtypes.PATH_TYPES:
                continue
            value = getattr(bus.args, action.dest, None)
            for item in value if isinstance(value, list) else [value]:
                if item:
                    found.append((f"config {config.path}, {bus.label}", key, item, action.type))
    return found


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


def resolve(document, path, sources):
    """Turn a parsed TOML document into a ProcessConfig."""
    where = f"config {path}"
    document = {_key(k): v for k, v in document.items()}
    buses_raw = document.pop("bus", [])
    if not isinstance(buses_raw, list) or not all(isinstance(b, dict) for b in buses_raw):
        raise ConfigError(f"{where}: bus must be [[bus]] tables, one per bus")
    if not buses_raw:
        raise ConfigError(f"{where}: no [[bus]] table: add one per bus, e.g. [[bus]] "
                          'interface = "socketcan" channel = "can0"')
    process_parser = sources[DEFAULT_SOURCE].parser
    process_table = _flag_table(process_parser, process_parser.process_flags)
    known_anywhere = set()
    for source in sources.values():
        known_anywhere.update(_bus_table(source.parser))
    process_values, defaults = {}, {}
    for key, value in document.items():
        if key in process_table:
            process_values[key] = _table_value(key, value, where)
        elif key == NAME_KEY:
            raise ConfigError(f"{where}: {key} belongs in a [[bus]] table, not at the top level")
        elif key in known_anywhere or key == SOURCE_KEY:
            defaults[key] = value
        else:
            raise ConfigError(f"{where}: unknown key {key}{_suggest(key, known_anywhere)}")
    process_argv = _argv(process_table, process_values, where)
    written = {key: value.value if isinstance(value, _Listen) else value
               for key, value in process_values.items()}
    config = ProcessConfig(path=path, buses=[], flags=process_table, written=written,
                           args=_parse(process_parser, process_argv, where))
    config.buses = [_resolve_bus(i + 1, raw, defaults, process_argv, where, sources)
                    for i, raw in enumerate(buses_raw)]
    _check_distinct(config, where)
    return config


def _table_value(key, value, where):
    """A process flag's value, or its ``[key]`` table of one ``listen`` key."""
    if not isinstance(value, dict):
        return value
    here = f"{where}, [{key}]"
    for inner in value:
        if inner != TABLE_KEY:
            raise ConfigError(f"{here}: unknown key {inner} (the table has {TABLE_KEY})")
    if TABLE_KEY not in value:
        raise ConfigError(f'{here}: {TABLE_KEY} is missing, e.g. {TABLE_KEY} = '
                          '"127.0.0.1:9100"')
    return _Listen(value[TABLE_KEY], here)


@dataclasses.dataclass
class _Listen:
    """A value given as ``[key] listen = ...``: its errors name the table and ``listen``."""

    value: object
    here: str


def _resolve_bus(index, raw, defaults, process_argv, where, sources):
    raw = {_key(k): v for k, v in raw.items()}
    given_name = raw.get(NAME_KEY)
    label = f'bus "{given_name}"' if isinstance(given_name, str) else f"bus {index}"
    here = f"{where}, {label}"
    source_name = raw.get(SOURCE_KEY, defaults.get(SOURCE_KEY, DEFAULT_SOURCE))
    if source_name not in sources:
        raise ConfigError(f"{here}: source {_shown(source_name)}: choose one of "
                          + ", ".join(sources))
    source = sources[source_name]
    parser = source.parser
    table = _bus_table(parser)
    elsewhere = _flag_table(parser, parser.process_flags + parser.command_line_flags)
    for key in raw:
        if key not in table and key not in BUS_KEYS:
            reason = ("belongs to the whole process: put it at the top level"
                      if key in elsewhere else f"is not a flag of the {source_name} source"
                      + _suggest(key, table))
            raise ConfigError(f"{here}: {key} {reason}")
    values = {k: v for k, v in defaults.items() if k in table}
    values.update({k: v for k, v in raw.items() if k not in BUS_KEYS})
    for key, (action, _) in table.items():
        if action.required and key not in values:
            raise ConfigError(f"{here}: {key} is required for the {source_name} source")
    argv = process_argv + list(source.implied) + _argv(table, values, here)
    args = _parse(parser, argv, here)
    name = given_name if given_name is not None else f"bus{index}"
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ConfigError(f"{here}: name {_shown(name)}: letters, digits, '.', '_', ':' or "
                          "'-', at most 64 (it is the metrics label and the log field)")
    return BusConfig(index=index, name=name, source=source_name,
                     command=parser.prog.rpartition(" ")[2], args=args, written=values,
                     flags=table, named=given_name is not None)


def _check_distinct(config, where):
    """Names differ, and nothing two buses (or a bus and the process) claim is shared: ports,
    adapters, spool folders (each claimed by the flags' owner: _server_args.bus_claims)."""
    seen_names = {}
    for bus in config.buses:
        if bus.name in seen_names:
            raise ConfigError(f"{where}: bus {bus.index} and bus {seen_names[bus.name]} are "
                              f"both named {_shown(bus.name)}: names must differ")
        seen_names[bus.name] = bus.index
    held = {claim.resource: (claim, None) for claim in sa.process_claims(config.args)}
    for bus in config.buses:
        for claim in sa.bus_claims(bus.args):
            if claim.resource in held:
                first, holder = held[claim.resource]
                owner, advice = (first.owner, first.advice) if holder is None else \
                    (f"{holder.label}'s", claim.advice)
                clash = f"{claim.what} is also {owner}: {advice}" if claim.what else advice
                raise ConfigError(f"{where}, {bus.label}: {clash}")
            held[claim.resource] = (claim, bus)


# ---- flags as keys ----

def _flag_table(parser, actions):
    """key -> (action, inverted) for ``actions`` of ``parser`` (the help action has none)."""
    table = {}
    for action in actions:
        key = _key_of(action)
        if key is None:
            continue
        table[key] = (action, False)
        if key.startswith("no_") and action.nargs == 0 and action.const is True:
            table.setdefault(key[3:], (action, True))  # zeroconf = false for --no-zeroconf
    return table


def _bus_table(parser):
    """The keys a [[bus]] table may hold for this command: its flags that are neither the
    process's nor the command line's alone."""
    elsewhere = parser.process_flags + parser.command_line_flags
    return _flag_table(parser, [a for a in parser.flags if a not in elsewhere])


def _key_of(action):
    if action.dest == argparse.SUPPRESS or (action.nargs == 0 and action.const is None and
                                            action.default == argparse.SUPPRESS):
        return None  # it stores nothing: --help, --version
    longs = [s for s in action.option_strings if s.startswith("--")]
    if action.option_strings and not longs:
        return None
    return _key(longs[0][2:] if longs else action.dest)


def _key(text):
    return str(text).replace("-", "_")


def _argv(table, values, here):
    """The command line these keys stand for: each value through its flag's type and choices
    here (so that a mistake names its key), then as the flag would be typed. A list for a
    repeatable flag is the flag given once per item; for a flag of several values (nargs +),
    its values."""
    options, positionals = [], []
    for key, value in values.items():
        where, shown_key = here, key
        if isinstance(value, _Listen):
            where, shown_key, value = value.here, TABLE_KEY, value.value
        action, inverted = table[key]
        option = ([s for s in action.option_strings if s.startswith("--")] or [None])[0]
        if action.nargs == 0:  # a switch
            if not isinstance(value, bool):
                raise ConfigError(f"{where}: {shown_key} {_shown(value)}: expected true or "
                                  "false")
            if value != inverted:
                options.append(option)
            continue
        items = value if isinstance(value, list) else [value]
        tokens = [_one(action, shown_key, item, where) for item in items]
        if action.nargs in ("+", "*"):
            if action.nargs == "+" and not tokens:
                raise ConfigError(f"{where}: {shown_key} is empty: give at least one value")
            if option is None:
                positionals += tokens
            else:
                options += [option] + tokens
            continue
        if action.nargs not in (None, "?"):
            raise ConfigError(f"{where}: {shown_key} cannot be set in a config file")
        if isinstance(value, list) and not isinstance(action.default, list):  # not repeatable
            raise ConfigError(f"{where}: {shown_key} {_shown(value)}: expected one value")
        if option is None:
            positionals += tokens
        else:
            options += [f"{option}={token}" for token in tokens]
    return options + (["--"] + positionals if positionals else [])


def _parse(parser, argv, here):
    """The command's own parse_args: the Namespace the command line would give."""
    try:
        return parser.parse_args(argv)
    except UsageError as exc:  # what the checks above could not see
        raise ConfigError(f"{here}: {exc}") from None


def _one(action, key, value, here):
    """One item of a value as its command-line word, checked by the flag's type and choices."""
    if isinstance(value, (list, dict)):
        raise ConfigError(f"{here}: {key} {_shown(value)}: expected one value")
    text = ("true" if value else "false") if isinstance(value, bool) else str(value)
    word, converted = text, text
    if action.type is not None:
        try:
            word, converted = _typed(action.type, value, text)
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
    return word


def _typed(convert, value, text):
    """(the word, its value). A TOML integer is a number, however the flag spells numbers:
    the hex-typed flags (padding, CAN ids) read "204" as 0x204, so it is offered in the one
    spelling every integer parser reads right (0x...) first, and as decimal text to the
    parsers that refuse that (floats, sizes)."""
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return hex(value), convert(hex(value))
        except (argparse.ArgumentTypeError, TypeError, ValueError):
            pass
    return text, convert(text)


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
    defaults = parser.parse_args([])
    return [min(action.option_strings, key=len, default=key)
            for key, (action, inverted) in _bus_table(parser).items()
            if not inverted and getattr(args, action.dest, None) !=
            getattr(defaults, action.dest, None)]


def apply_command_line(config, parser, args):
    """The process flags given beside --config win over the file, for every bus too."""
    defaults = parser.parse_args([])
    for action in parser.process_flags:
        if not hasattr(args, action.dest):
            continue  # a flag whose default is to leave no value, not given
        value = getattr(args, action.dest)
        if value == getattr(defaults, action.dest, None):
            continue
        for namespace in [config.args] + [bus.args for bus in config.buses]:
            setattr(namespace, action.dest, value)
        config.written.pop(_key_of(action), None)  # the file's spelling no longer holds


# ---- from buses to Bus objects ----

def build_buses(config, check=False):
    """A server.Bus per [[bus]], each source made by its own command's ``source_from_args``
    (the command's own checks run too; their errors name the bus). With ``check``, a bus whose
    command would open an adapter to build its source (``--auto``) gets None."""
    from ..server import Bus

    buses = []
    for bus in config.buses:
        if check and bus.args.source_opens_adapter(bus.args):
            buses.append(None)
            continue
        try:
            source = bus.args.source_from_args(bus.args)
            # the serving flags' own checks (--mqtt's URL and files, --record's folder...)
            options = sa.bus_options(bus.args)
        except ConfigError:
            raise
        except UsageError as exc:
            raise ConfigError(f"config {config.path}, {bus.label}: {exc}") from None
        options.name = bus.name
        buses.append(Bus(source, options))
    return buses


# ---- --check ----

def describe(config, buses=None):
    """The resolved configuration as TOML (every key, defaults included)."""
    lines = [f"# {config.path}: {len(config.buses)} bus"
             + ("es" if len(config.buses) != 1 else "")]
    lines += _describe_keys(config.flags, config.args, config.written, skip_unset=True)
    for i, bus in enumerate(config.buses):
        lines += [""]
        if buses is not None:
            lines.append("# " + (buses[i].source.description if buses[i] is not None
                                 else "the first adapter that opens (auto)"))
        lines += ["[[bus]]", f"name = {_toml(bus.name)}", f"source = {_toml(bus.source)}"]
        lines += _describe_keys(bus.flags, bus.args, bus.written)
    return "\n".join(lines)


def _describe_keys(flags, args, written, skip_unset=False):
    lines = []
    for key, (action, inverted) in flags.items():
        if inverted or (key.startswith("no_") and key[3:] in flags):
            continue  # shown in its positive spelling
        value = getattr(args, action.dest, None)
        if value is None or value == []:
            if not skip_unset:
                lines.append(f"# {key} not set")
        elif not isinstance(value, (str, int, float)):  # filters, --opt pairs: as written
            lines.append(f"{key} = {_toml(written[key] if key in written else str(value))}")
        else:
            lines.append(f"{key} = {_toml(value)}")
    for key, (action, inverted) in flags.items():
        if inverted:
            lines.append(f"{key} = {_toml(getattr(args, action.dest) == action.default)}")
    return lines


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
