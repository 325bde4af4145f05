"""Errors that stop a stage with a message for the user instead of a traceback."""

from __future__ import annotations

from pydantic import ValidationError


class CreditRiskError(Exception):
    """Base class: the message says what is wrong and where."""


class ConfigError(CreditRiskError):
    """params.yaml, the data contract or a CLI argument is missing, malformed or invalid."""


class DataError(CreditRiskError):
    """Input data cannot be read or breaks the data contract."""


def format_validation_error(exc: ValidationError) -> str:
    """One line per problem: the dotted key, what is wrong, and the value given."""
    lines = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"]) or "(top level)"
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown key (misspelled, or not used by this version)"
        given = (
            "" if error["type"] in {"missing", "extra_forbidden"} else f" (got {error['input']!r})"
        )
        lines.append(f"  - {key}: {message}{given}")
    return "\n".join(lines)
