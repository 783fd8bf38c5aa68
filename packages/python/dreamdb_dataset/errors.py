"""One exception hierarchy for everything DreamDB raises in Python.

Errors raised by the TypeScript core arrive with the same stable ``code`` and message a
TypeScript caller sees (``ERR_DATASET_UNKNOWN_FIELD``, ``ERR_ARROW_INVALID_VALUE``, ...) and
the values involved in ``details``. Callers match on ``code``; the subclasses only let
``except ValueError`` / ``except LookupError`` work where Python users expect them to.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = [
    "DreamDBError",
    "InvalidInputError",
    "NotFoundError",
    "ConflictError",
    "IntegrityError",
    "BridgeError",
    "error_from_document",
]


class DreamDBError(Exception):
    """A DreamDB failure with a stable ``code`` (``ERR_<LAYER>_<WHAT>``)."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details: dict[str, Any] = dict(details or {})


class InvalidInputError(DreamDBError, ValueError):
    """Bad input: a value, option, name or field the call refused before writing anything."""


class NotFoundError(DreamDBError, LookupError):
    """A ref, object or bucket that does not exist."""


class ConflictError(DreamDBError):
    """A ref moved under us or a name is taken."""


class IntegrityError(DreamDBError):
    """Stored bytes failed verification, or metadata disagrees with itself."""


class BridgeError(DreamDBError):
    """The Node.js bridge process could not be started, or stopped answering."""


_INVALID = re.compile(r"_(INVALID|UNKNOWN|RESUME_MISMATCH|READ_ONLY|DIMENSION_MISMATCH|NOT_FINITE|ZERO_VECTOR|WRONG_KIND|BAD_REQUEST)")
_NOT_FOUND = re.compile(r"_NOT_FOUND$")
_CONFLICT = re.compile(r"_(CONFLICT|EXISTS|TAKEN|IMMUTABLE|LOCKED)")
_INTEGRITY = re.compile(r"_(CORRUPT|INTEGRITY|MISSING_OBJECT)")


def error_from_document(document: dict[str, Any]) -> DreamDBError:
    """The exception for an error document sent by the bridge."""
    code = str(document.get("code") or "ERR_BRIDGE_INTERNAL")
    message = str(document.get("message") or code)
    details = document.get("details") or {}
    if code.startswith("ERR_BRIDGE_") and code != "ERR_BRIDGE_BAD_REQUEST":
        cls: type[DreamDBError] = BridgeError
    elif _NOT_FOUND.search(code):
        cls = NotFoundError
    elif _INVALID.search(code):
        cls = InvalidInputError
    elif _CONFLICT.search(code):
        cls = ConflictError
    elif _INTEGRITY.search(code):
        cls = IntegrityError
    else:
        cls = DreamDBError
    error = cls(code, message, details)
    if document.get("stack"):
        error.details["stack"] = document["stack"]
    return error
