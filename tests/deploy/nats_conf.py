"""A reader of the NATS server configuration format, enough for deploy/nats/*.conf.

The format (docs.nats.io, "Configuration File"): maps ``{}``, arrays ``[]``, ``key: value``
(or ``key = value`` or ``key value``), items separated by commas, semicolons or line
breaks, ``#`` and ``//`` comments, quoted or bare strings; ``$NAME`` stays as written (the
server reads it from the environment). ``include`` is refused, and so is a key given
twice in one map, so a file this cannot read fails the tests instead of being half read.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["parse"]

_TOKEN = re.compile(
    r"""(?P<space>\s+)
      | (?P<comment>(?:\#|//)[^\n]*)
      | (?P<punct>[{}\[\],;:=])
      | "(?P<dq>(?:[^"\\]|\\.)*)"
      | '(?P<sq>[^']*)'
      | (?P<bare>[^\s{}\[\],;:="'\#]+)
    """,
    re.X,
)


def _tokens(text: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise ValueError(f"cannot read the NATS config at {text[position : position + 20]!r}")
        position = match.end()
        kind = match.lastgroup
        assert kind is not None
        if kind == "punct":
            found.append(("punct", match[kind]))
        elif kind in ("dq", "sq", "bare"):
            found.append(("string", match[kind]))
    return found


class _Reader:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.at = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise ValueError("the NATS config ends too early")
        self.at += 1
        return token

    def map_body(self, closing: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        while (token := self.peek()) is not None:
            if token == ("punct", closing):
                self.at += 1
                return out
            if token in (("punct", ","), ("punct", ";")):
                self.at += 1
                continue
            kind, key = self.take()
            if kind != "string":
                raise ValueError(f"a key expected, got {key!r}")
            if key == "include":
                raise ValueError("include is not supported here")
            if self.peek() in (("punct", ":"), ("punct", "=")):
                self.at += 1
            if key in out:
                raise ValueError(f"{key!r} given twice in one map")
            out[key] = self.value()
        if closing is not None:
            raise ValueError(f"{closing!r} missing at the end of the NATS config")
        return out

    def value(self) -> Any:
        kind, text = self.take()
        if (kind, text) == ("punct", "{"):
            return self.map_body("}")
        if (kind, text) == ("punct", "["):
            items: list[Any] = []
            while (token := self.peek()) != ("punct", "]"):
                if token is None:
                    raise ValueError("']' missing in the NATS config")
                if token in (("punct", ","), ("punct", ";")):
                    self.at += 1
                    continue
                items.append(self.value())
            self.at += 1
            return items
        if kind != "string":
            raise ValueError(f"a value expected, got {text!r}")
        return text


def parse(text: str) -> dict[str, Any]:
    """The configuration as nested dicts and lists of strings (numbers stay strings)."""
    return _Reader(text).map_body(None)
