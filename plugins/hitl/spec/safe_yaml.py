"""Read one spec file's YAML with hard limits, before any of it becomes Python objects.

A spec file is untrusted input that the DAG file parses on every dag-processor loop. One
file must never crash, hang or exhaust that process, because that would hide every DAG the
file builds. So the text is checked first, then read from the YAML parser's *event stream*
(libyaml's parser is iterative: deep nesting cannot exhaust the C or the Python stack) and
turned into plain values here, counting as it goes and stopping at the first limit crossed.
Nothing in this module recurses.

Limits (``Limits``; the defaults are below):

- ``MAX_FILE_BYTES`` = 1 MiB per file. Checked with ``stat`` and again while reading, so a
  huge file is never read whole. Only regular files are read (not FIFOs or devices).
- Text must be UTF-8 (a leading UTF-8 byte-order mark is allowed and dropped) and free of
  the control characters YAML forbids (NUL, ESC, DEL, ...); each is reported with its line.
  A NUL written as an escape (``"\\0"``, ``"\\u0000"``) is refused too: PostgreSQL cannot store it.
- ``MAX_DEPTH`` = 50 nested lists/mappings. Checked as each one opens, and for an alias
  against the depth of what it stands for. Python's recursion limit (~1000) is never near.
- ``MAX_NODES`` = 50,000 values (every scalar, list, mapping and key), counted *after*
  alias expansion: an alias costs the full size of what it repeats.
- ``MAX_EXPANDED_CHARS`` = 2 MiB of scalar text after alias expansion (stops a large string
  repeated by aliases, which the node count alone would let grow to gigabytes).
- ``MAX_NUMBER_CHARS`` = 100 characters for an integer or float (Python refuses to convert
  integers of more than 4,300 digits, and ``1:2:3:...`` sexagesimal ints grow quadratically).

Aliases (``*name``) are bounded, not refused: each counts what it expands to against the
limits above (a "billion laughs" file stops after 50,000 values), and one that refers to a
list or mapping still being built (a recursive structure such as ``&a [*a]``) is an error.
Merge keys (``<<: *defaults``) work as in PyYAML.

Plain data only: text, integers, floats, true/false, null, lists and mappings. Any other
tag (``!!python/object``, ``!!binary``, ``!!timestamp``, ``!!set``, local ``!tags``) is an
error. Dates stay text: ``2024-01-01`` is the string ``"2024-01-01"`` (as in YAML 1.2), and
the loader checks it where a date is expected. Every mapping key must be text: ``1:``,
``true:``/``on:``, ``null:``/``~:`` and list or mapping keys (``? [a, b] : 1``) are errors
that name the key. Duplicate keys are errors (the last one wins, as in PyYAML). One YAML
document per file.

Limit and syntax problems end the read (``Parsed.data`` is None); the others are reported
and reading goes on, so a file's every mistake is listed at once.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.events import (
    AliasEvent,
    DocumentEndEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
    StreamStartEvent,
)
from yaml.nodes import ScalarNode

MAX_FILE_BYTES = 1024 * 1024
MAX_DEPTH = 50
MAX_NODES = 50_000
MAX_EXPANDED_CHARS = 2 * 1024 * 1024
MAX_NUMBER_CHARS = 100

KeyPath = tuple[str | int, ...]

_TAG = "tag:yaml.org,2002:"
STR, INT, FLOAT, BOOL, NULL = (_TAG + t for t in ("str", "int", "float", "bool", "null"))
SEQ, MAP, MERGE, TIMESTAMP, VALUE = (_TAG + t for t in ("seq", "map", "merge", "timestamp", "value"))
# Tags a plain scalar may resolve to that stay text: dates (checked where a date is expected),
# PyYAML's '=' value tag and '<<' outside a key. Written explicitly, only !!str is text.
_IMPLICIT_TEXT_TAGS = {STR, TIMESTAMP, VALUE, MERGE}
# YAML's printable set, less U+FEFF (a byte-order mark is dropped at the start, refused elsewhere).
_NON_PRINTABLE = re.compile("[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]")
_CONTROL_NAMES = {0: "NUL", 0x1B: "ESC", 0x7F: "DEL", 0x08: "backspace", 0x0C: "form feed"}


@dataclass(frozen=True)
class Limits:
    max_file_bytes: int = MAX_FILE_BYTES
    max_depth: int = MAX_DEPTH
    max_nodes: int = MAX_NODES
    max_expanded_chars: int = MAX_EXPANDED_CHARS
    max_number_chars: int = MAX_NUMBER_CHARS


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Problem:
    """One mistake in the file: 1-based line, key path (may be empty), message."""

    line: int
    path: KeyPath
    message: str


@dataclass(frozen=True)
class LateQuote:
    """A quoted value that runs over several lines: where its quote opens and where it closes (1-based)."""

    opened: int
    closed: int
    path: KeyPath
    keys_inside: bool  # a line between looks like ``key: value`` or ``- key: value``

    def message(self) -> str:
        return (
            f"the quote opened on this line closes only at line {self.closed}, so lines {self.opened + 1}"
            f"-{self.closed} are read as its text (close the quote on this line)"
        )


@dataclass
class Parsed:
    data: Any = None
    lines: dict[KeyPath, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    fatal: bool = False  # the file could not be read to the end: ``data`` is None
    bad_values: set[KeyPath] = field(default_factory=set)  # values already reported (their stand-ins are not checked)
    # Quoted values whose closing quote is lines after the opening one and whose lines between look like keys:
    # almost always a quote left open (the text swallowed the keys). Reported by the loader when the file has
    # other errors (the swallowed keys are missing), never on their own: such text can be meant.
    late_quotes: list[LateQuote] = field(default_factory=list)

    def line(self, path: KeyPath) -> int:
        """The line of ``path``, or of its nearest ancestor the file has."""
        for end in range(len(path), -1, -1):
            found = self.lines.get(path[:end])
            if found is not None:
                return found
        return 1


class _Stop(Exception):
    def __init__(self, line: int, path: KeyPath | None, message: str) -> None:
        super().__init__(message)
        self.problem = Problem(line, path or (), message)


def read_spec_text(path: Path, limits: Limits = DEFAULT_LIMITS) -> tuple[str | None, Problem | None]:
    """The file's text, or why it cannot be a spec (too big, not a regular file, not UTF-8)."""
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            return None, Problem(1, (), "cannot read file: not a regular file")
        if info.st_size > limits.max_file_bytes:
            return None, _too_big(info.st_size, limits)
        with open(path, "rb") as f:
            raw = f.read(limits.max_file_bytes + 1)
    except OSError as exc:
        return None, Problem(1, (), f"cannot read file: {exc.strerror or exc}")
    if len(raw) > limits.max_file_bytes:
        return None, _too_big(len(raw), limits)
    return decode(raw)


def _too_big(size: int, limits: Limits) -> Problem:
    return Problem(1, (), f"file is {size:,} bytes; a spec file may have at most {limits.max_file_bytes:,} bytes")


def decode(raw: bytes) -> tuple[str | None, Problem | None]:
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return None, Problem(1, (), "file is UTF-16 (it starts with a UTF-16 byte-order mark): save it as UTF-8")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, column = _position(raw[: exc.start], _BYTE_BREAKS)
        byte = raw[exc.start : exc.start + 1].hex()
        return None, Problem(line, (), f"not UTF-8 text: byte 0x{byte} at column {column} (save the file as UTF-8)")
    return text.removeprefix("\ufeff"), None


# Line breaks as YAML (and libyaml's marks) count them: CR LF, CR, LF, NEL, LS, PS.
_BREAKS = re.compile("\r\n|[\r\n\x85\u2028\u2029]")
_BYTE_BREAKS = re.compile(b"\r\n|[\r\n]|\xc2\x85|\xe2\x80[\xa8\xa9]")


def _position(before: Any, breaks: re.Pattern[Any]) -> tuple[int, int]:
    """1-based (line, column) of the character right after ``before``."""
    line, start = 1, 0
    for match in breaks.finditer(before):
        line, start = line + 1, match.end()
    return line, len(before) - start + 1


def _char_problems(text: str, limit: int = 10) -> list[Problem]:
    """The first bad character of each line that has one (up to ``limit`` lines), in one pass."""
    problems: list[Problem] = []
    line, line_start, scanned = 1, 0, 0
    match = _NON_PRINTABLE.search(text)
    while match is not None and len(problems) < limit:
        for brk in _BREAKS.finditer(text, scanned, match.start()):
            line, line_start = line + 1, brk.end()
        scanned = match.start()
        code, column = ord(match.group()), match.start() - line_start + 1
        if code == 0xFEFF:
            message = f"a byte-order mark (U+FEFF) at column {column}: one is allowed only at the very start"
        else:
            name = _CONTROL_NAMES.get(code)
            what = f"U+{code:04X}" + (f" ({name})" if name else "")
            message = f"control character {what} at column {column} is not allowed in YAML"
        problems.append(Problem(line, (), message))
        next_line = _BREAKS.search(text, match.end())  # one report per line: go on from the next one
        if next_line is None:
            break
        match = _NON_PRINTABLE.search(text, next_line.start())
    return problems


def _parser(text: str) -> Any:
    try:
        from yaml._yaml import CParser
    except ImportError:  # no libyaml: PyYAML's own parser (slower, same events)
        return _PyParser(text)
    return CParser(text)


class _PyParser(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser):  # type: ignore[misc]
    """PyYAML's pure-Python parser, when libyaml is missing (also iterative)."""

    def __init__(self, text: str) -> None:
        yaml.reader.Reader.__init__(self, text)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)

    def dispose(self) -> None:
        pass


def parse(text: str, limits: Limits = DEFAULT_LIMITS) -> Parsed:
    """Read one YAML document from ``text`` as plain data, within ``limits``. Never raises for the text."""
    bad_chars = _char_problems(text)
    if bad_chars:
        return Parsed(problems=bad_chars, fatal=True)
    builder = _Builder(limits)
    builder.text = text
    parser = _parser(text)
    try:
        builder.run(parser)
    except _Stop as stop:
        builder.problems.append(stop.problem)
        return Parsed(problems=builder.problems, fatal=True)
    except yaml.YAMLError as exc:
        builder.problems.append(_syntax_problem(exc, text, limits, builder.late_quotes))
        return Parsed(problems=builder.problems, fatal=True)
    finally:
        parser.dispose()
    return Parsed(
        data=builder.root,
        lines=builder.line_map(),
        problems=builder.problems,
        bad_values=builder.bad_values,
        late_quotes=[q for q in builder.late_quotes if q.keys_inside],
    )


# A line that reads like a key of a spec: ``key:`` or ``- key: value`` (what a quote left open swallows).
_KEY_LINE = re.compile(r"^[ ]*(?:-[ ]+)?[A-Za-z_][\w.-]*:(?:[ ]|$)")


def _late_quote(event: Any, path: KeyPath | None, text_lines: Callable[[], list[str]]) -> LateQuote | None:
    """The quoted scalar ``event`` as a LateQuote when it runs over more than one line, else None."""
    if event.style not in ('"', "'"):
        return None
    opened, closed = event.start_mark.line + 1, event.end_mark.line + 1
    if closed <= opened:
        return None
    keys_inside = any(_KEY_LINE.match(line) for line in text_lines()[opened:closed])
    return LateQuote(opened=opened, closed=closed, path=path or (), keys_inside=keys_inside)


def _syntax_problem(
    exc: yaml.YAMLError, text: str, limits: Limits, late_quotes: list[LateQuote] | None = None
) -> Problem:
    lines = text.splitlines() or [""]
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line = mark.line + 1 if mark is not None else 1
    line = max(1, min(line, len(lines)))
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if "maximum nesting depth" in problem:  # libyaml's own (higher) limit, met while scanning ahead
        return Problem(line, (), f"nested deeper than {limits.max_depth} levels")
    message = f"YAML syntax error: {problem}"
    context = getattr(exc, "context", None) or ""
    context_mark = getattr(exc, "context_mark", None)
    context_line = max(1, min(context_mark.line + 1, len(lines))) if context_mark is not None else None
    # Where libyaml notices a mistake is not always where it is: a key without its ':' is noticed on the
    # next line, a quote left open at the end of the file. Then the line that holds the mistake is named.
    hint = _SYNTAX_HINTS.get(problem, "")
    # A quote left open that a later quote closes: libyaml reads the lines between as the value's text and
    # stumbles on what follows the (wrong) closing quote, lines later. The last value read before the
    # mistake is that quoted text, ending on the line libyaml names: the mistake is where it opens.
    late = late_quotes[-1] if late_quotes else None
    if late is not None and late.closed == line and late.opened < line:
        message += f" (noticed at line {line})"
        return Problem(late.opened, (), f"{message}; {late.message()}")
    if (
        context_line is not None
        and context_line < line
        and (
            problem.startswith("could not find expected ':'")
            or (context.startswith("while scanning a quoted scalar") and "end of stream" in problem)
        )
    ):
        message += f" (noticed at line {line})"
        line = context_line
        hint = "the quote opened on this line is never closed" if "quoted" in context else hint
    elif context and context_line is not None and context_line < line:
        message += f" ({context} at line {context_line})"
    source = lines[line - 1]
    if "\t" in source[: len(source) - len(source.lstrip())] or "'\\t'" in problem:
        message += "; a tab indents this line, and YAML indents with spaces only"
        others = [str(n) for n, text in enumerate(lines, 1) if n != line and text[:1] == "\t"]
        if others:  # every tab-indented line at once, not one per run
            more = f" and {len(others) - 10} more" if len(others) > 10 else ""
            message += f" (tabs also indent line{'s' if len(others) > 1 else ''} {', '.join(others[:10])}{more})"
    elif hint:
        message += f"; {hint}"
    return Problem(line, (), message)


# What a beginner's mistake behind libyaml's words usually is.
_SYNTAX_HINTS = {
    "mapping values are not allowed in this context": (
        "a ': ' inside a plain value (put the value in quotes), or a line indented deeper than its neighbours"
    ),
    "did not find expected key": "this line is not indented like the keys above it",
    "could not find expected ':'": "a key needs ':' and a space before its value (key: value)",
    "did not find expected '-' indicator": "a list item needs '- ' at the list's indentation",
}


def _short_tag(tag: str) -> str:
    return "!!" + tag[len(_TAG) :] if tag.startswith(_TAG) else tag


_SHOWN_DEPTH = 6  # a too-deep value is reported under its first few keys, not a 50-part path
_ALLOWED = "text, numbers, true/false, null, lists and mappings"


class _Anchor:
    __slots__ = ("chars", "entries", "height", "nodes", "path", "tag", "value")

    def __init__(
        self,
        value: Any,
        tag: str | None,
        path: KeyPath | None,
        entries: list[tuple[KeyPath, int, bool]],
        nodes: int,
        chars: int,
        height: int,
    ) -> None:
        self.value, self.tag, self.path, self.entries = value, tag, path, entries
        self.nodes, self.chars, self.height = nodes, chars, height


_OPEN = object()  # an anchor whose list or mapping is still being read


class _Frame:
    """A list or mapping being read."""

    __slots__ = (
        "anchor",
        "chars0",
        "entry0",
        "height",
        "is_map",
        "items",
        "key",
        "key_line",
        "key_ok",
        "line",
        "merge_list",
        "merges",
        "nodes0",
        "path",
        "want_key",
        "weak",
    )

    def __init__(self, is_map: bool, path: KeyPath | None, weak: bool, line: int) -> None:
        self.is_map = is_map
        self.line = line
        self.path = path  # None inside a key (nothing there gets a line of its own)
        self.weak = weak  # inside a merge (<<): lines yield to the mapping's own keys
        self.items: Any = {} if is_map else []
        self.want_key = True
        self.key: Any = None
        self.key_line = 0
        self.key_ok = False  # False: the key was bad (reported) or is a merge key
        self.merges: list[tuple[Any, int]] = []
        self.merge_list = False  # a list that is the value of <<: its items merge into the mapping
        self.height = 1
        self.anchor: str | None = None
        self.nodes0 = self.chars0 = self.entry0 = 0


class _Builder:
    """Turns parser events into plain values, line numbers per key path, and problems."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.stack: list[_Frame] = []
        self.anchors: dict[str, Any] = {}
        self.entries: list[tuple[KeyPath, int, bool]] = []  # (path, line, weak) in document order
        self.problems: list[Problem] = []
        self.bad_values: set[KeyPath] = set()
        self.nodes = 0
        self.chars = 0
        self.root: Any = None
        self.constructor = SafeConstructor()
        self.resolver = yaml.resolver.Resolver()
        self.late_quotes: list[LateQuote] = []
        self.text = ""
        self._lines: list[str] | None = None

    def text_lines(self) -> list[str]:
        """The file's lines, split once and only when a quoted value runs over lines (rare)."""
        if self._lines is None:
            self._lines = _BREAKS.split(self.text)
        return self._lines

    # -- driving ------------------------------------------------------------------------

    def run(self, parser: Any) -> None:
        documents = 0
        while True:
            event = parser.get_event()
            kind = type(event)
            if kind is ScalarEvent:
                self.scalar(event)
            elif kind is MappingStartEvent or kind is SequenceStartEvent:
                self.start(event, kind is MappingStartEvent)
            elif kind is MappingEndEvent or kind is SequenceEndEvent:
                self.end()
            elif kind is AliasEvent:
                self.alias(event)
            elif kind is DocumentStartEvent:
                documents += 1
                if documents > 1:
                    raise _Stop(
                        event.start_mark.line + 1,
                        (),
                        "a second YAML document starts here: a spec file holds exactly one (remove the '---')",
                    )
            elif kind is StreamEndEvent:
                return
            elif kind is not StreamStartEvent and kind is not DocumentEndEvent:
                raise _Stop(event.start_mark.line + 1, (), f"unexpected YAML event {kind.__name__}")

    def line_map(self) -> dict[KeyPath, int]:
        lines: dict[KeyPath, int] = {}
        for path, line, weak in self.entries:
            if weak:
                lines.setdefault(path, line)
            else:
                lines[path] = line
        return lines

    # -- counting -------------------------------------------------------------------------

    def count(self, nodes: int, chars: int, line: int) -> None:
        self.nodes += nodes
        self.chars += chars
        if self.nodes > self.limits.max_nodes:
            raise _Stop(line, self._here(), f"more than {self.limits.max_nodes:,} values (after expanding aliases)")
        if self.chars > self.limits.max_expanded_chars:
            raise _Stop(
                line,
                self._here(),
                f"more than {self.limits.max_expanded_chars:,} characters of text (after expanding aliases)",
            )

    def _here(self) -> KeyPath:
        for frame in reversed(self.stack):
            if frame.path is not None:
                return frame.path
        return ()

    # -- placing a value in its parent ------------------------------------------------------

    def next_path(self) -> KeyPath:
        """The key path the next value will have (for errors about it), without recording anything."""
        top = self.stack[-1] if self.stack else None
        if top is None or top.path is None:
            return self._here()
        if not top.is_map and not top.merge_list:
            return (*top.path, len(top.items))
        if top.is_map and not top.want_key and top.key_ok:
            return (*top.path, top.key)
        return top.path

    def place(self, line: int) -> tuple[KeyPath | None, bool]:
        """The key path of the value starting at ``line``; records that path's line."""
        if not self.stack:
            self.entries.append(((), line, False))
            return (), False
        top = self.stack[-1]
        if top.path is None:
            return None, top.weak
        if not top.is_map:
            if top.merge_list:
                return top.path, True
            path = (*top.path, len(top.items))
            self.entries.append((path, line, top.weak))
            return path, top.weak
        if top.want_key:
            return None, top.weak
        if top.key is _MERGE_KEY:
            return top.path, True
        if not top.key_ok:
            return None, top.weak
        path = (*top.path, top.key)
        self.entries.append((path, top.key_line, top.weak))
        return path, top.weak

    def add(self, value: Any, line: int, raw: str | None = None) -> None:
        """Hand a finished value to its parent."""
        if not self.stack:
            self.root = value
            return
        top = self.stack[-1]
        if not top.is_map:
            top.items.append(value)
            return
        if top.want_key:
            top.want_key = False
            top.key, top.key_line, top.key_ok = value, line, False
            if value is _MERGE_KEY:
                return
            if isinstance(value, str):
                top.key_ok = True
            elif top.path is not None:
                self.problems.append(Problem(line, top.path, _bad_key(value, raw)))
            return
        top.want_key = True
        if top.key is _MERGE_KEY:
            top.merges.append((value, top.key_line))
        elif top.key_ok:
            if top.key in top.items and top.path is not None:
                self.problems.append(Problem(top.key_line, (*top.path, top.key), "duplicate key"))
            top.items[top.key] = value

    # -- events -----------------------------------------------------------------------------

    def scalar(self, event: Any) -> None:
        line = event.start_mark.line + 1
        value_text: str = event.value
        self.count(1, len(value_text), line)
        path, _weak = self.place(line)
        tag = event.tag
        merge = False
        if tag is None or tag == "!":
            tag = self.resolver.resolve(ScalarNode, value_text, event.implicit)
            if tag in _IMPLICIT_TEXT_TAGS:
                merge, tag = tag == MERGE, STR
        if "\x00" in value_text:  # an escape ("\0", "\u0000"): the raw text was checked already
            self.bad_value(
                line, path, "contains a NUL character (an escape like \\0): Airflow's database cannot store it"
            )
            value_text = value_text.replace("\x00", "")
        value = self.construct(tag, value_text, line, path)
        late = _late_quote(event, path, self.text_lines)
        if late is not None:
            self.late_quotes.append(late)
        if event.anchor is not None:
            self.anchors[event.anchor] = _Anchor(value, MERGE if merge else tag, path, [], 1, len(value_text), 0)
        if merge and self.stack and self.stack[-1].is_map and self.stack[-1].want_key:
            value = _MERGE_KEY
        self.add(value, line, value_text)

    def bad_value(self, line: int, path: KeyPath | None, message: str) -> None:
        """A value the file may not hold: reported here, so the schema stays quiet about its stand-in."""
        if path is None:  # inside a key: report it at the mapping
            self.problems.append(Problem(line, self._here(), message))
            return
        self.problems.append(Problem(line, path, message))
        self.bad_values.add(path)

    def construct(self, tag: str, text: str, line: int, path: KeyPath | None) -> Any:
        if tag == STR:
            return text
        if tag == NULL:
            if text not in ("", "~", "null", "Null", "NULL"):
                self.bad_value(line, path, f"{_clip(text)!r} is not null (tag !!null)")
            return None
        if tag == BOOL:
            found = self.constructor.bool_values.get(text.lower())
            if found is None:
                self.bad_value(line, path, f"{_clip(text)!r} is not true or false (tag !!bool)")
                return text
            return found
        if tag in (INT, FLOAT):
            if len(text) > self.limits.max_number_chars:
                self.bad_value(
                    line,
                    path,
                    f"number too long ({len(text):,} characters; at most {self.limits.max_number_chars}):"
                    " quote it if it is text",
                )
                return None
            build = self.constructor.construct_yaml_int if tag == INT else self.constructor.construct_yaml_float
            try:
                return build(ScalarNode(tag, text))
            except (ValueError, TypeError, OverflowError):
                self.bad_value(line, path, f"{_clip(text)!r} is not a valid {_short_tag(tag)}")
                return text
        if tag in (SEQ, MAP):
            self.bad_value(line, path, f"tag {_short_tag(tag)} does not fit a scalar")
            return text
        self.bad_value(line, path, f"tag {_clip(_short_tag(tag))} is not allowed: a spec holds plain data ({_ALLOWED})")
        return text

    def start(self, event: Any, is_map: bool) -> None:
        line = event.start_mark.line + 1
        self.count(1, 0, line)
        if len(self.stack) + 1 > self.limits.max_depth:
            raise _Stop(line, self._here()[:_SHOWN_DEPTH], f"nested deeper than {self.limits.max_depth} levels")
        path, weak = self.place(line)
        parent = self.stack[-1] if self.stack else None
        frame = _Frame(is_map, path, weak, line)
        if not is_map and parent is not None and parent.is_map and not parent.want_key and parent.key is _MERGE_KEY:
            frame.merge_list = True
        tag = event.tag
        if tag not in (None, "!", MAP if is_map else SEQ):
            self.bad_value(
                line, path, f"tag {_clip(_short_tag(tag))} is not allowed: a spec holds plain data ({_ALLOWED})"
            )
        if event.anchor is not None:
            frame.anchor = event.anchor
            frame.nodes0, frame.chars0, frame.entry0 = self.nodes - 1, self.chars, len(self.entries)
            self.anchors[event.anchor] = _OPEN
        self.stack.append(frame)

    def end(self) -> None:
        frame = self.stack.pop()
        value = frame.items
        if frame.is_map and frame.merges:
            value = self.merge(frame)
        if frame.anchor is not None:
            self.anchors[frame.anchor] = _Anchor(
                value,
                None,
                frame.path,
                self.entries[frame.entry0 :],
                self.nodes - frame.nodes0,
                self.chars - frame.chars0,
                frame.height,
            )
        if self.stack:
            parent = self.stack[-1]
            parent.height = max(parent.height, frame.height + 1)
        self.add(value, frame.line)

    def merge(self, frame: _Frame) -> dict[Any, Any]:
        merged: dict[Any, Any] = {}
        for value, line in reversed(frame.merges):  # the first << wins over later ones
            sources = value if isinstance(value, list) else [value]
            for source in reversed(sources):  # in a list, earlier mappings win
                if isinstance(source, dict):
                    merged.update(source)
                elif frame.path is not None:
                    self.problems.append(
                        Problem(line, frame.path, "a merge key (<<) takes a mapping or a list of mappings")
                    )
        merged.update(frame.items)  # the mapping's own keys win
        return merged

    def alias(self, event: Any) -> None:
        line = event.start_mark.line + 1
        anchor = self.anchors.get(event.anchor)
        if anchor is None:
            raise _Stop(
                line, self.next_path(), f"alias *{_clip(event.anchor)} refers to no anchor (&{_clip(event.anchor)})"
            )
        if anchor is _OPEN:
            raise _Stop(
                line,
                self.next_path(),
                f"alias *{_clip(event.anchor)} is inside the very list or mapping it names (a recursive structure)",
            )
        if len(self.stack) + anchor.height > self.limits.max_depth:
            raise _Stop(
                line,
                self.next_path()[:_SHOWN_DEPTH],
                f"nested deeper than {self.limits.max_depth} levels (through an alias)",
            )
        self.count(anchor.nodes, anchor.chars, line)
        path, weak = self.place(line)
        if path is not None and anchor.path is not None:
            cut = len(anchor.path)
            self.entries.extend((path + p[cut:], ln, weak or w) for p, ln, w in anchor.entries)
        if self.stack:
            parent = self.stack[-1]
            parent.height = max(parent.height, anchor.height + 1)
        value = anchor.value
        if anchor.tag == MERGE and self.stack and self.stack[-1].is_map and self.stack[-1].want_key:
            value = _MERGE_KEY
        self.add(value, line)


class _MergeKey:
    def __repr__(self) -> str:
        return "<<"


_MERGE_KEY = _MergeKey()


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _bad_key(value: Any, raw: str | None) -> str:
    shown = repr(_clip(raw)) if raw is not None else repr(value)
    if value is None:
        return "a key cannot be empty or null: write it as text"
    if isinstance(value, bool):
        return f"key {shown} reads as {str(value).lower()}, not text: put it in quotes"
    if isinstance(value, int | float):
        return f"key {shown} is a number, not text: put it in quotes"
    if isinstance(value, list):
        return "a list cannot be a key: keys must be text"
    if isinstance(value, dict):
        return "a mapping cannot be a key: keys must be text"
    return f"key {_clip(repr(value))} is not text"
