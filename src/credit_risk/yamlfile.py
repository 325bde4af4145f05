"""Reading settings (a YAML file, a JSON argument) into a strict model: every problem names
where it is and the key."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from credit_risk.errors import ConfigError

if TYPE_CHECKING:
    from ruamel.yaml import YAML

Model = TypeVar("Model", bound=BaseModel)
Parsed = TypeVar("Parsed")


def load_yaml_model(path: Path, model: type[Model], what: str, missing: str) -> Model:
    """Parse ``path`` into ``model``; a ConfigError says what is wrong (``what`` names the file's
    role, ``missing`` what to say when it does not exist)."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: {missing}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return checked_mapping(raw, model.model_validate, str(path), what, "a mapping at the top level")


def checked_mapping(
    raw: object, parse: Callable[[object], Parsed], where: str, what: str, expected: str
) -> Parsed:
    """``parse(raw)`` for a mapping; anything else (``expected`` says what was wanted), or a
    validation error, is a ConfigError that names ``where`` and, for each problem, the key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected {expected} (got {type(raw).__name__})")
    try:
        return parse(raw)
    except ValidationError as exc:
        raise ConfigError(f"{where}: invalid {what}\n{format_validation_error(exc)}") from None


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


def round_trip_yaml() -> YAML:
    """A YAML reader and writer that keeps a file's comments, quotes and key order, and writes
    null as ``null``: for the commands that edit params.yaml (adopt, retrain-data). ruamel is a
    pipeline dependency, not a serving one: imported here, never when the service loads."""
    from ruamel.yaml import YAML

    yaml_io = YAML()
    yaml_io.preserve_quotes = True
    yaml_io.width = 100
    yaml_io.representer.add_representer(
        type(None), lambda dumper, _: dumper.represent_scalar("tag:yaml.org,2002:null", "null")
    )
    return yaml_io
