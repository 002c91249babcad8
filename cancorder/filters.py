"""``--filter``: the one place where filter rules are read, for every source and for ``dump``.

Accepted spellings (ids and masks in hex, an optional 0x):
- python-can's ``ID:MASK``: a frame passes when ``frame_id & MASK == ID & MASK``;
- candump's ``ID~MASK``: the inverse, a frame passes when it does not match;
- one rule list after each ``--filter`` (comma-separated: ``--filter 7E0:7F0,7E8:7FF``),
  and ``--filter`` repeated; a frame passes when any rule passes it. One value per flag, so
  that flags and a target or file name go in any order (``dump --filter 7E8:7FF HOST``).
An id above 7FF, or written with 8 digits as candump does, matches 29-bit frames only; a shorter
one matches both kinds. The rules become one ``_fast.wire.RecordFilter``, built once.
"""
import argparse
import re

from ._fast import wire

_RULE = re.compile(r"(?:0x)?([0-9a-fA-F]{1,8})([:~])(?:0x)?([0-9a-fA-F]{1,8})")
EXAMPLE = "7E8:7FF (pass 7E8), 7E0:7F0 (7E0..7EF), 123~7FF (all but 123)"


def parse_rules(text):
    """One ``--filter`` argument -> a list of rules ``(can_id, mask, extended, inverse)``."""
    rules = []
    for part in re.split(r"[,\s]+", text.strip()):
        if not part:
            continue
        match = _RULE.fullmatch(part)
        if not match:
            raise ValueError(f"{part}: expected ID:MASK or ID~MASK in hex, e.g. {EXAMPLE}")
        id_text, kind, mask_text = match.groups()
        can_id, mask = int(id_text, 16), int(mask_text, 16)
        if can_id > wire.MAX_EXTENDED_ID or mask > wire.MAX_EXTENDED_ID:
            raise ValueError(f"{part}: ids and masks are at most 1FFFFFFF")
        extended = True if can_id > wire.MAX_STANDARD_ID or len(id_text) == 8 else None
        rules.append((can_id, mask, extended, kind == "~"))
    if not rules:
        raise ValueError(f"expected ID:MASK or ID~MASK in hex, e.g. {EXAMPLE}")
    return rules


def can_filter(text):
    """An argparse type for one word after ``--filter`` (a list of rules)."""
    try:
        return parse_rules(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class FilterAction(argparse.Action):
    """``--filter R[,R...]``, repeatable: every rule in one flat list."""

    def __call__(self, parser, namespace, values, option_string=None):
        rules = list(getattr(namespace, self.dest, None) or [])
        rules.extend(values)
        setattr(namespace, self.dest, rules)


def add_filter_argument(parser, what="pass only frames whose id matches"):
    parser.add_argument("--filter", dest="filters", action=FilterAction,
                        type=can_filter, default=[], metavar="ID:MASK[,...]",
                        help=f"{what} ID under MASK (hex); ID~MASK passes those that do not; "
                             "several rules (comma-separated, or --filter repeated) pass a "
                             "frame that any rule passes")


def record_filter(rules):
    """The compiled filter for these rules, or None when there are none (everything passes)."""
    return wire.RecordFilter(rules) if rules else None
