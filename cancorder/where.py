"""``dump --where 'EngineSpeed > 3000 and Gear == "Drive"'``: frames kept by the values of
their decoded signals (``--dbc``), in every format, ``-o`` and the monitor.

The grammar is small and parsed here (a tokenizer and a recursive-descent parser; nothing is
ever evaluated as Python)::

    condition  := either ("or" either)*
    either     := term ("and" term)*
    term       := "not" term | "(" condition ")" | comparison
    comparison := operand ("==" | "=" | "!=" | "<" | "<=" | ">" | ">=") operand
    operand    := NAME | Message.NAME | number (12, -3.5, 0x1F) | "text" | 'text'

A name is a signal of any message, or ``Message.Signal`` for one message's. A frame whose
message lacks a named signal makes that comparison unknown, and unknown never passes (``not``
of unknown is unknown, as in SQL): a condition on engine speed shows only frames that carry it.
Choices compare by name with text (``Gear == "Drive"``) and by raw value with numbers.
"""
import operator
import re

from .errors import UsageError

_TOKEN = re.compile(r"""\s*(?:
    (?P<number>[-+]?(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?))
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)
  | (?P<text>"[^"]*"|'[^']*')
  | (?P<op>==|!=|<=|>=|=|<|>)
  | (?P<paren>[()])
)""", re.VERBOSE)

_COMPARE = {"==": operator.eq, "=": operator.eq, "!=": operator.ne, "<": operator.lt,
            "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_WORDS = ("and", "or", "not")


def tokens(text):
    """[(kind, value, position)]; UsageError at the first character that starts no token."""
    out = []
    position = 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise UsageError(f"--where {text!r}: unexpected {text[position:].lstrip()[:10]!r} "
                             f"at character {position + 1} (write comparisons such as "
                             "'EngineSpeed > 3000', joined by and, or, not and parentheses)")
        kind = match.lastgroup
        value = match.group(kind)
        if kind == "name" and value in _WORDS:
            kind = value
        elif kind == "number":
            value = int(value, 16) if value.lower().lstrip("+-").startswith("0x") else (
                float(value) if any(c in value for c in ".eE") else int(value))
        elif kind == "text":
            value = value[1:-1]
        out.append((kind, value, match.start(match.lastgroup) + 1))
        position = match.end()
    return out


class _Parser:
    def __init__(self, text):
        self.text = text
        self.items = tokens(text)
        self.index = 0

    def peek(self):
        return self.items[self.index][0] if self.index < len(self.items) else None

    def take(self):
        item = self.items[self.index]
        self.index += 1
        return item

    def fail(self, what):
        if self.index < len(self.items):
            found = f"{self.items[self.index][1]!r} at character {self.items[self.index][2]}"
        else:
            found = "the end"
        raise UsageError(f"--where {self.text!r}: expected {what}, found {found}")

    def parse(self):
        if not self.items:
            raise UsageError("--where: the condition is empty (e.g. --where 'EngineSpeed > 3000')")
        node = self.condition()
        if self.index != len(self.items):
            self.fail("and, or or the end")
        return node

    def condition(self):
        node = self.either()
        while self.peek() == "or":
            self.take()
            node = ("or", node, self.either())
        return node

    def either(self):
        node = self.term()
        while self.peek() == "and":
            self.take()
            node = ("and", node, self.term())
        return node

    def term(self):
        kind = self.peek()
        if kind == "not":
            self.take()
            return ("not", self.term())
        if kind == "paren" and self.items[self.index][1] == "(":
            self.take()
            node = self.condition()
            if self.peek() != "paren" or self.items[self.index][1] != ")":
                self.fail("')'")
            self.take()
            return node
        left = self.operand()
        if self.peek() != "op":
            self.fail("a comparison (== != < <= > >=)")
        op = self.take()[1]
        return ("compare", _COMPARE[op], left, self.operand())

    def operand(self):
        if self.peek() not in ("number", "name", "text"):
            self.fail("a signal name, a number or a quoted text")
        kind, value, _ = self.take()
        return (kind, value)


class SignalCondition:
    """A parsed ``--where``; ``passes(decoded)`` for one dbc.Decoded, ``keep(frames)`` for a
    batch (decoded by ``signals``, a dbc.SignalDecoder)."""

    def __init__(self, text, signals):
        self.text = text
        self.signals = signals
        self.tree = _Parser(text).parse()
        self._check_names(self.tree)

    def _check_names(self, node):
        if node[0] in ("and", "or"):
            self._check_names(node[1])
            self._check_names(node[2])
        elif node[0] == "not":
            self._check_names(node[1])
        elif node[0] == "compare":
            for operand in node[2:]:
                if operand[0] == "name":
                    self._check_name(operand[1])

    def _check_name(self, name):
        known = self.signals.signal_names()  # {message name: set of signal names}
        message, _, signal = name.rpartition(".")
        if message:
            if message not in known:
                raise UsageError(f"--where: no message '{message}' in "
                                 f"{', '.join(self.signals.paths)}")
            if signal not in known[message]:
                raise UsageError(f"--where: message {message} has no signal '{signal}' (it "
                                 f"has {', '.join(sorted(known[message])) or 'none'})")
        elif not any(signal in names for names in known.values()):
            raise UsageError(f"--where: no signal '{signal}' in any message of "
                             f"{', '.join(self.signals.paths)} (Message.Signal names one "
                             "message's)")

    def passes(self, decoded):
        return _evaluate(self.tree, decoded) is True

    def keep(self, frames):
        decode = self.signals.decode
        kept = []
        for frame in frames:
            decoded = decode(frame[1], frame[2], frame[3])
            if decoded is not None and not decoded.error and \
                    _evaluate(self.tree, decoded) is True:
                kept.append(frame)
        return kept


def _evaluate(node, decoded):
    """True, False, or None (unknown: a named signal is not in this message)."""
    kind = node[0]
    if kind == "and":
        left = _evaluate(node[1], decoded)
        if left is False:
            return False
        right = _evaluate(node[2], decoded)
        if right is False:
            return False
        return None if left is None or right is None else True
    if kind == "or":
        left = _evaluate(node[1], decoded)
        if left is True:
            return True
        right = _evaluate(node[2], decoded)
        if right is True:
            return True
        return None if left is None or right is None else False
    if kind == "not":
        value = _evaluate(node[1], decoded)
        return None if value is None else not value
    _, compare, left, right = node
    left_value = _value(left, decoded)
    right_value = _value(right, decoded)
    if left_value is None or right_value is None:
        return None
    left_value, right_value = _comparable(left_value, right_value)
    try:
        return bool(compare(left_value, right_value))
    except TypeError:  # text against a number: < > have no answer
        return None


def _value(operand, decoded):
    kind, value = operand
    if kind != "name":
        return value
    message, _, signal = value.rpartition(".")
    if message and message != decoded.name:
        return None
    return decoded.signals.get(signal)


def _comparable(left, right):
    """A choice (cantools' NamedSignalValue) is its name beside text, its number otherwise."""
    left_text, right_text = isinstance(left, str), isinstance(right, str)
    if hasattr(left, "name") and hasattr(left, "value"):
        left = left.name if right_text else left.value
    if hasattr(right, "name") and hasattr(right, "value"):
        right = right.name if left_text else right.value
    return left, right
