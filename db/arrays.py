"""Typed array parameters for the hot path's statements, dumped straight to Postgres's array literal.

psycopg adapts a plain ``list`` generically: on every execution it walks the list to find its element type, builds
a dumper for that type and dumps element by element — in Python, with the GIL held.  Profiled in a busy worker
(``py-spy --gil``, the pipeline benchmark), that was most of the time spent dumping a turn's parameters, a tenth of
the worker's Python time: the fence's six tool-call arrays, the attach's four and the sent record's four.  These
classes say the element type up front, so one small dumper writes the literal (``{"a","b",NULL}``) in one pass
and the statement gets the array type's OID (its ``::text[]`` cast is a no-op).

Use them only for parameters that *are* arrays of the named type; anything else still goes through psycopg's
own adaptation.  Registered on psycopg's global adapters when this module is imported (``db`` imports it), before
any connection is made.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, ClassVar, TypeVar

import psycopg
from psycopg._encodings import conn_encoding
from psycopg.adapt import Dumper
from psycopg.pq import Format

T = TypeVar("T")


def _quoted(value: str) -> str:
    # Inside double quotes only the backslash and the double quote are special (PostgreSQL's array input).
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _literal(values: Iterable[T | None], element: Callable[[T], str]) -> str:
    return "{" + ",".join("NULL" if v is None else element(v) for v in values) + "}"


class _TypedArray(list[T]):
    """A list whose elements are all of one Postgres type (or None)."""

    array_type: ClassVar[str]  # the Postgres array type's name, for the OID lookup

    @staticmethod
    def element(value: Any) -> str:
        raise NotImplementedError


class TextArray(_TypedArray[str | None]):
    array_type = "text[]"
    element = staticmethod(_quoted)


class JsonbArray(_TypedArray[str | None]):
    """Elements are JSON documents already serialised (``json.dumps``)."""

    array_type = "jsonb[]"
    element = staticmethod(_quoted)


class BigintArray(_TypedArray[int | None]):
    array_type = "int8[]"

    @staticmethod
    def element(value: int) -> str:
        return str(int(value))


class IntArray(_TypedArray[int | None]):
    array_type = "int4[]"

    @staticmethod
    def element(value: int) -> str:
        return str(int(value))


class BoolArray(_TypedArray[bool | None]):
    array_type = "bool[]"

    @staticmethod
    def element(value: bool) -> str:
        return "t" if value else "f"


class TimestamptzArray(_TypedArray[datetime | None]):
    """Aware datetimes (a naive one is read in the session's time zone, as psycopg's own dumper would)."""

    array_type = "timestamptz[]"

    @staticmethod
    def element(value: datetime) -> str:
        return '"' + value.isoformat() + '"'


def _dumper_for(cls: type[_TypedArray[Any]]) -> type[Dumper]:
    info = psycopg.postgres.types.get(cls.array_type.removesuffix("[]"))
    if info is None or not info.array_oid:
        raise LookupError(f"no built-in array type {cls.array_type}")
    oid = info.array_oid
    element = cls.element

    class _ArrayLiteralDumper(Dumper):
        format = Format.TEXT

        def __init__(self, cls: type, context: Any = None) -> None:
            super().__init__(cls, context)
            self.oid = oid
            self._encoding = conn_encoding(self.connection)

        def dump(self, obj: Any) -> bytes:
            literal = _literal(obj, element)
            if "\x00" in literal:  # the server would cut the literal there: refuse it as psycopg's text dumper does
                raise psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")
            return literal.encode(self._encoding)

    _ArrayLiteralDumper.__name__ = _ArrayLiteralDumper.__qualname__ = f"{cls.__name__}Dumper"
    return _ArrayLiteralDumper


TYPED_ARRAYS: tuple[type[_TypedArray[Any]], ...] = (
    TextArray,
    JsonbArray,
    BigintArray,
    IntArray,
    BoolArray,
    TimestamptzArray,
)
for _cls in TYPED_ARRAYS:
    psycopg.adapters.register_dumper(_cls, _dumper_for(_cls))
