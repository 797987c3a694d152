"""Which calls a fault rule's ``body`` names: fields of the JSON body (and query args), nested ones
included, so a rule can say what a bug report says ("the run whose tag mlflow.source.name is...",
"versions whose source starts with dbfs:/").

Each key is a JMESPath expression over ``{**query args, **JSON body}`` (``name``, ``tags[].key``,
``tags[?key=='mlflow.user'].value``); a key that is not an expression (``api-version``) is a plain
field name. Each value is an exact value, ``{"prefix": "dbfs:/"}`` or ``{"glob": "runs:/*/model"}``.
A key that yields a list (``tags[].key``) matches when any element does; every key must match.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from typing import Any

import jmespath
from jmespath.exceptions import JMESPathError

OPERATORS = ("prefix", "glob")


class BadMatch(ValueError):
    """A body condition that cannot be read (the rule is refused with this message)."""


def _text(value: Any) -> str:
    # JSON's spelling for true/false/null, so "--body archived=true" matches a JSON true.
    return json.dumps(value) if isinstance(value, bool) or value is None else str(value)


@dataclass(frozen=True)
class Condition:
    key: str
    expected: Any  # a scalar (exact), or {"prefix": str} / {"glob": str}
    expression: Any = None  # the compiled JMESPath, None for a plain field name

    @classmethod
    def parse(cls, key: str, expected: Any) -> Condition:
        if isinstance(expected, dict):
            if len(expected) != 1 or next(iter(expected)) not in OPERATORS or not isinstance(
                    next(iter(expected.values())), str):
                raise BadMatch(f"body field {key!r}: a value, or one of {{\"prefix\": str}}, {{\"glob\": str}}.")
        elif isinstance(expected, list):
            raise BadMatch(f"body field {key!r}: a value, or one of {{\"prefix\": str}}, {{\"glob\": str}}.")
        try:
            expression = jmespath.compile(key)
        except JMESPathError:
            expression = None  # not an expression: the field of that name
        return cls(key, expected, expression)

    def _values(self, document: dict) -> list:
        if self.key in document or self.expression is None:
            found = document.get(self.key)
        else:
            try:
                found = self.expression.search(document)
            except JMESPathError:  # e.g. a function given the wrong type by this body: no match, not a 500
                return []
        return [v for v in (found if isinstance(found, list) else [found]) if v is not None]

    def _accepts(self, value: Any) -> bool:
        if isinstance(value, (dict, list)):
            return False
        if isinstance(self.expected, dict):
            (op, pattern), = self.expected.items()
            text = _text(value)
            return text.startswith(pattern) if op == "prefix" else fnmatch.fnmatchcase(text, pattern)
        return _text(value) == _text(self.expected)

    def matches(self, document: dict) -> bool:
        return any(self._accepts(v) for v in self._values(document))


# fidelity: Fault injection
def conditions(body: dict) -> tuple[Condition, ...]:
    return tuple(Condition.parse(str(k), v) for k, v in body.items())


def matches_all(conds: tuple[Condition, ...], document: dict) -> bool:
    return all(c.matches(document) for c in conds)


def split_cli_condition(item: str) -> tuple[str, Any]:
    """``FIELD=VALUE`` (exact), ``FIELD^=PREFIX``, ``FIELD~=GLOB``; FIELD may hold ``==`` inside
    brackets or quotes (``tags[?key=='x'].value=y``): the first ``=`` outside them splits."""
    depth, quote = 0, None
    for i, ch in enumerate(item):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"`":
            quote = ch
        elif ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        elif ch == "=" and depth == 0:
            key, value = item[:i], item[i + 1:]
            if key.endswith("^"):
                return key[:-1], {"prefix": value}
            if key.endswith("~"):
                return key[:-1], {"glob": value}
            return key, value
    raise BadMatch(f"expected FIELD=VALUE, FIELD^=PREFIX or FIELD~=GLOB, got {item!r}")
