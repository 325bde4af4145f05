"""Adopt a new data set in one command: infer its contract, point the pipeline at it.

    python -m credit_risk.adopt --data my.csv --target churned --positive yes \
        --protected gender --protected age

It reads the CSV (plain or .gz), infers a first data contract (types, ranges, categories, the
target and its positive value, an example record), checks the file against it, and only then
writes, each file atomically:

- ``src/credit_risk/contract.yaml``: the new contract (the service, tests and synthetic source
  follow it);
- ``params.yaml``: the source file, protected attributes (kept for fairness checks, not used
  as model inputs), and the experiment and model names; comments are kept;
- the data file, copied under ``data/external/`` when it lives outside the repository.

Then it lists what a person should review. Nothing is written if anything is wrong.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from credit_risk.config import DEFAULT_PARAMS
from credit_risk.deploy.environments import ENVIRONMENTS_DIR
from credit_risk.errors import ConfigError, DataError
from credit_risk.files import write_with
from credit_risk.schema import CONTRACT_FILE, ColumnRule, Contract, Value
from credit_risk.stage import run
from credit_risk.validate import BOOLEAN_WORDS, HEADER_LINES, read_csv, validate
from credit_risk.yamlfile import round_trip_yaml

log = logging.getLogger("credit_risk.adopt")

MAX_CATEGORIES = 50  # text columns with more distinct values are not categories
MAX_INTEGER_CATEGORIES = 10  # integer columns with at most this many values are codes
DEFAULT_MIN_ROWS = 50
DEFAULT_MIN_SHARE = 0.05
EXTERNAL_DATA = Path("data/external")
INTEGER_TEXT = re.compile(r"^[+-]?\d+$")
WORD = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class Choices:
    """What the user said on the command line."""

    data: Path
    target: str
    positive: str
    protected: tuple[str, ...] = ()
    name: str | None = None
    entity: str = "record"
    entity_plural: str | None = None
    decisions: tuple[str, str] = ("flag", "pass")
    labels: tuple[str, str] | None = None  # words for the positive and the other outcome
    max_categories: int = MAX_CATEGORIES


def slug(text: str, separator: str = "_") -> str:
    """Lower-case letters, digits and the separator, starting with a letter."""
    cleaned = re.sub(r"[^a-z0-9]+", separator, text.lower()).strip(separator)
    return cleaned if cleaned[:1].isalpha() else f"x{separator}{cleaned}".rstrip(separator)


def _first_line(mask: pd.Series) -> int:
    return int(np.flatnonzero(mask.to_numpy())[0]) + HEADER_LINES + 1


def infer_rule(name: str, text: pd.Series, max_categories: int) -> ColumnRule:
    """The contract rule a column of CSV text satisfies; a DataError when none fits."""
    missing = text.isna()
    if missing.any():
        raise DataError(
            f"column {name!r}: {int(missing.sum())} empty values (first on line "
            f"{_first_line(missing)}); the contract requires every value: fill or drop them first"
        )
    values = text.astype(str)
    distinct = values.unique()
    lowered = {v.strip().lower() for v in distinct}
    if lowered <= set(BOOLEAN_WORDS):
        return ColumnRule(type="bool", description="")
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.notna().all() and np.isfinite(numbers).all():
        if values.str.strip().str.match(INTEGER_TEXT).all():
            whole = numbers.astype(np.int64)
            if whole.nunique() <= MAX_INTEGER_CATEGORIES:
                return ColumnRule(type="int", allowed=sorted(int(v) for v in whole.unique()))
            return ColumnRule(type="int", min=int(whole.min()), max=int(whole.max()))
        return ColumnRule(type="float", min=float(numbers.min()), max=float(numbers.max()))
    if len(distinct) > max_categories:
        raise DataError(
            f"column {name!r}: {len(distinct)} distinct text values, too many for categories "
            f"(limit {max_categories}: --max-categories); drop the column (an identifier or "
            "free text is not a model input) or group its values"
        )
    return ColumnRule(type="str", allowed=sorted(str(v) for v in distinct))


def typed_value(text: str, rule: ColumnRule) -> Value:
    """A CSV value as the rule's type."""
    if rule.type == "bool":
        return BOOLEAN_WORDS[text.strip().lower()]
    if rule.type == "int":
        return int(text)
    if rule.type == "float":
        return float(text)
    return text


def _example_value(column: pd.Series, rule: ColumnRule) -> Value:
    """A typical value, not any real row: the median of a number, the commonest category."""
    if rule.allowed is None and rule.type in {"int", "float"}:
        median = float(column.median())
        return round(median) if rule.type == "int" else round(median, 4)
    counts = column.value_counts()
    top = counts[counts == counts.max()].index
    return sorted(top, key=str)[0]


def band_edges(column: pd.Series, integer: bool) -> list[int | float]:
    """Quartile cut points, rounded to two significant digits, for a numeric protected column."""
    edges: list[int | float] = []
    for quantile in (0.25, 0.5, 0.75):
        value = float(column.quantile(quantile))
        rounded = float(f"{value:.2g}")
        edge: int | float = round(rounded) if integer or rounded.is_integer() else rounded
        if (not edges or edge > edges[-1]) and column.min() < edge <= column.max():
            edges.append(edge)
    return edges


def infer_contract(frame: pd.DataFrame, choices: Choices) -> Contract:
    """A first contract for ``frame`` (CSV text) and the user's choices."""
    if choices.target not in frame.columns:
        raise ConfigError(f"--target {choices.target!r}: no such column; columns: {list(frame)}")
    unknown = [c for c in choices.protected if c not in frame.columns or c == choices.target]
    if unknown:
        raise ConfigError(f"--protected {unknown}: not feature columns; columns: {list(frame)}")
    if len(frame.columns) < 2:
        raise DataError(f"{choices.data}: found only {list(frame)}; is it comma-separated?")
    target_text = frame[choices.target]
    outcomes = sorted(target_text.dropna().astype(str).unique())
    if len(outcomes) != 2:
        raise DataError(
            f"column {choices.target!r}: the target needs exactly two outcomes, found "
            f"{len(outcomes)}: {outcomes[:10]}"
        )
    if choices.positive not in outcomes:
        raise ConfigError(
            f"--positive {choices.positive!r}: not a value of {choices.target!r}; "
            f"its values: {outcomes}"
        )
    rules: dict[str, ColumnRule] = {}
    for name in map(str, frame.columns):
        rule = infer_rule(name, frame[name], choices.max_categories)
        if name == choices.target:
            if rule.type == "bool":
                rule = ColumnRule(type="bool", allowed=[False, True])
            elif rule.type in {"int", "float"} and rule.allowed is None:
                rule = ColumnRule(type=rule.type, allowed=[typed_value(v, rule) for v in outcomes])
            rule = rule.model_copy(update={"description": "The outcome the model learns"})
        rules[name] = rule
    typed = {name: _typed_column(frame[name], rule) for name, rule in rules.items()}
    positive = typed_value(choices.positive, rules[choices.target])
    negative = next(v for v in rules[choices.target].allowed or () if v != positive)
    share = float((typed[choices.target] == positive).mean())
    minority = min(share, 1 - share)
    min_share = DEFAULT_MIN_SHARE if minority >= 2 * DEFAULT_MIN_SHARE else _floor2(minority / 2)
    features = [name for name in frame.columns if name != choices.target]
    document = {
        "entity": choices.entity,
        "entity_plural": choices.entity_plural or f"{choices.entity}s",
        "target": {
            "column": choices.target,
            "positive": positive,
            "positive_label": choices.labels[0] if choices.labels else _label(positive, "positive"),
            "negative_label": choices.labels[1] if choices.labels else _label(negative, "negative"),
        },
        "decisions": {
            "at_or_above_threshold": choices.decisions[0],
            "below_threshold": choices.decisions[1],
        },
        "min_rows": min(DEFAULT_MIN_ROWS, len(frame)),
        "min_outcome_share": min_share,
        "columns": {name: rule.model_dump(exclude_none=True) for name, rule in rules.items()},
        "example": {name: _example_value(typed[name], rules[name]) for name in features},
        "raises_probability": [],
    }
    try:
        return Contract.model_validate(document)
    except ValueError as problem:
        raise ConfigError(f"the inferred contract is not valid: {problem}") from None


def _typed_column(text: pd.Series, rule: ColumnRule) -> pd.Series:
    return text.map(lambda value: typed_value(value, rule))


def _floor2(value: float) -> float:
    """Round down to two significant digits (a share limit the data itself satisfies)."""
    exponent = int(np.floor(np.log10(value))) - 1
    return float(np.floor(value / 10.0**exponent) * 10.0**exponent)


def _label(value: object, fallback: str) -> str:
    """A word for an outcome: the value itself when it is a word ("yes"), else the fallback."""
    if not isinstance(value, str):
        return fallback
    word = slug(value)
    return word if WORD.match(word) and len(word) <= 40 else fallback


# --- writing ----------------------------------------------------------------------------------
def _scalar(value: object) -> str:
    """A YAML scalar that reads back as exactly this value (JSON is valid YAML)."""
    return json.dumps(value, ensure_ascii=False)


def contract_text(terms: Contract, source: Path, rows: int) -> str:
    """The contract as a commented YAML file, in the layout of the shipped example."""
    lines = [
        f"# The data contract, inferred by `python -m credit_risk.adopt` from {source} ({rows} "
        "rows).",
        "# Review it like code: ranges are the ones observed (widen them to what is plausible),",
        "# integer columns with few values are categories, and the words name the service's",
        "# fields. Every part of the template reads this file (see src/credit_risk/schema.py).",
        "",
        f"entity: {_scalar(terms.entity)}  # the service takes {{{_scalar(terms.entity)}: ...}}",
        f"entity_plural: {_scalar(terms.entity_plural)}",
        "",
        "target:",
        f"  column: {_scalar(terms.target.column)}",
        f"  positive: {_scalar(terms.target.positive)}  # the outcome whose probability the "
        "model predicts",
        f"  positive_label: {_scalar(terms.target.positive_label)}  # the service answers "
        f"probability_{terms.target.positive_label}",
        f"  negative_label: {_scalar(terms.target.negative_label)}",
        "",
        "decisions:  # the service's decision at or above / below the threshold",
        f"  at_or_above_threshold: {_scalar(terms.decisions.at_or_above_threshold)}",
        f"  below_threshold: {_scalar(terms.decisions.below_threshold)}",
        "",
        f"min_rows: {terms.min_rows}",
        f"min_outcome_share: {terms.min_outcome_share}",
        "",
        "columns:  # type: int | float | str | bool; allowed: the only values; min/max: inclusive",
    ]
    for name, rule in terms.columns.items():
        lines.append(f"  {_scalar(name)}:")
        for key, value in rule.model_dump(exclude_none=True).items():
            lines.append(f"    {key}: {_scalar(value)}")
    lines += [
        "",
        "# A typical record (medians and commonest values, not a real row): the "
        "service's documented example.",
        "example:",
    ]
    lines += [f"  {_scalar(name)}: {_scalar(value)}" for name, value in terms.example.items()]
    lines += [
        "",
        "# Domain knowledge the model tests check: moving `feature` from `from` to `to` raises the",
        "# predicted probability of the positive outcome. Add what you know, for example:",
        "#   - {feature: tenure, from: 36, to: 2}",
        "raises_probability: []",
        "",
    ]
    return "\n".join(lines)


def update_params(
    path: Path, terms: Contract, frame: pd.DataFrame, choices: Choices, data_file: Path, name: str
) -> str:
    """params.yaml with the new source, protected attributes and names; comments kept."""
    yaml = round_trip_yaml()
    document = yaml.load(path.read_text(encoding="utf-8"))
    document["ingest"]["source"] = "file"
    document["ingest"]["file"] = data_file.as_posix()
    document["ingest"]["synthetic"]["shift"] = CommentedMap()
    protected = CommentedMap()
    for column in choices.protected:
        rule = terms.columns[column]
        if rule.allowed is None and rule.type in {"int", "float"}:
            numbers = pd.to_numeric(frame[column])
            edges = band_edges(numbers, rule.type == "int")
            protected[column] = _flow(edges) if edges else None
        else:
            protected[column] = None
    document["evaluate"]["protected_attributes"] = protected
    document["train"]["drop_features"] = _flow(list(choices.protected))
    document["tracking"]["experiment"] = name
    document["serve"]["model_name"] = name
    # The prediction log keeps the protected attributes, so the monitor can check fairness live.
    document["serve"]["prediction_log"]["keep_attributes"] = _flow(list(choices.protected))
    buffer = io.StringIO()
    yaml.dump(document, buffer)
    return buffer.getvalue()


def _flow(items: list[Any]) -> CommentedSeq:
    sequence = CommentedSeq(items)
    sequence.fa.set_flow_style()
    return sequence


def place_data(root: Path, data: Path, name: str) -> Path:
    """The data file's path inside the repository (copying it under data/external/ if needed)."""
    resolved = data.resolve()
    try:
        return resolved.relative_to(root.resolve())
    except ValueError:
        pass
    suffix = "".join(data.suffixes[-2:]) if data.suffix == ".gz" else data.suffix or ".csv"
    inside = EXTERNAL_DATA / f"{name}{suffix}"
    target = root / inside
    if target.exists() and target.read_bytes() != resolved.read_bytes():
        raise ConfigError(f"{target} exists with other content; move it away or pass --name")
    return inside


def adopt(root: Path, choices: Choices) -> list[str]:
    """Infer, check and write everything; return what the user should review."""
    frame = read_csv(choices.data)
    terms = infer_contract(frame, choices)
    typed, problems = validate(frame, terms=terms)
    if typed is None:  # cannot happen for an inferred contract, unless inference has a bug
        listing = "\n".join(f"  - {p.describe()}" for p in problems)
        raise DataError(f"{choices.data} does not satisfy its inferred contract:\n{listing}")
    name = slug(choices.name or choices.data.name.split(".")[0], "-")
    if not re.match(r"^[a-z0-9][a-z0-9_.-]*$", name):
        raise ConfigError(f"--name {name!r}: use lower-case letters, digits, '-', '_' or '.'")
    inside = place_data(root, choices.data, name)
    params_text = update_params(root / DEFAULT_PARAMS, terms, frame, choices, inside, name)
    contract_file = root / CONTRACT_FILE.relative_to(CONTRACT_FILE.parents[2])
    if not (root / inside).exists():
        write_with(root / inside, lambda tmp: shutil.copyfile(choices.data, tmp))
    text = contract_text(terms, choices.data, len(frame))
    write_with(contract_file, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    write_with(root / DEFAULT_PARAMS, lambda tmp: tmp.write_text(params_text, encoding="utf-8"))
    return review_list(terms, choices, inside, contract_file.relative_to(root))


def review_list(terms: Contract, choices: Choices, data_file: Path, contract: Path) -> list[str]:
    numeric = [n for n, r in terms.columns.items() if r.allowed is None and r.type != "bool"]
    codes = [
        n
        for n, r in terms.columns.items()
        if r.type == "int" and r.allowed is not None and n != terms.target.column
    ]
    items = [
        f"{contract}: ranges of {numeric} are the observed ones; widen them to what is plausible"
        if numeric
        else f"{contract}: the categories of every column",
        f"{contract}: the wording: {{{terms.entity!r}: ...}} requests, "
        f"probability_{terms.target.positive_label}, decisions "
        f"{terms.decisions.at_or_above_threshold}/{terms.decisions.below_threshold}",
        f"{contract}: raises_probability is empty: add what domain knowledge says",
        "params.yaml: train.drop_features (protected attributes are not model inputs) and the "
        "band edges under evaluate.protected_attributes",
        "params.yaml: gate.min_roc_auc, the quality floor, and train.decision_threshold",
        f"{data_file}: its provenance and licence, in data/README.md",
    ]
    if codes:
        items.insert(
            1,
            f"{contract}: {codes} have few integer values and became categories; "
            "make them numeric (min/max) if they are counts",
        )
    return items


def _arguments() -> Choices:
    parser = argparse.ArgumentParser(
        prog="python -m credit_risk.adopt",
        description="Adopt a CSV data set: infer its contract and point the pipeline at it.",
    )
    parser.add_argument("--data", type=Path, required=True, help="the CSV (plain or .gz)")
    parser.add_argument("--target", required=True, help="the column the model predicts")
    parser.add_argument("--positive", required=True, help="the target value to predict")
    parser.add_argument(
        "--protected",
        action="append",
        default=[],
        metavar="COLUMN",
        help="a protected attribute (repeat): fairness-checked, not an input",
    )
    parser.add_argument("--name", help="experiment and model name (default: the file's name)")
    parser.add_argument("--entity", default="record", help="what a row is, e.g. customer")
    parser.add_argument("--entity-plural", help="its plural (default: entity + s)")
    parser.add_argument(
        "--decisions",
        nargs=2,
        default=["flag", "pass"],
        metavar=("AT_OR_ABOVE", "BELOW"),
        help="the two decisions' words",
    )
    parser.add_argument(
        "--labels",
        nargs=2,
        metavar=("POSITIVE", "OTHER"),
        help="words for the two outcomes, e.g. bad good (default: the values when they are words)",
    )
    parser.add_argument(
        "--max-categories",
        type=int,
        default=MAX_CATEGORIES,
        help="most distinct values a text column may have",
    )
    args = parser.parse_args()
    for word in (args.entity, args.entity_plural, *args.decisions, *(args.labels or ())):
        if word is not None and not WORD.match(word):
            parser.error(f"{word!r}: use a lower-case word (letters, digits, _)")
    return Choices(
        data=args.data,
        target=args.target,
        positive=args.positive,
        protected=tuple(dict.fromkeys(args.protected)),
        name=args.name,
        entity=args.entity,
        entity_plural=args.entity_plural,
        decisions=(args.decisions[0], args.decisions[1]),
        labels=(args.labels[0], args.labels[1]) if args.labels else None,
        max_categories=args.max_categories,
    )


def render_manifests(root: Path) -> None:
    """Re-render the Kubernetes manifests, which carry the model's name, from the new params.

    In a process of its own, which reads the new contract and params as the next command will
    (this one holds the old ones)."""
    if not (root / ENVIRONMENTS_DIR).is_dir():
        return
    command = [sys.executable, "-m", "credit_risk.deploy.kubernetes", "render"]
    done = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise ConfigError(f"rendering the manifests failed: {done.stderr.strip()}")


def main() -> None:
    choices = _arguments()
    items = adopt(Path.cwd(), choices)
    render_manifests(Path.cwd())
    print(f"Adopted {choices.data}. Review before you commit:")
    for item in items:
        print(f"  - {item}")
    print("Then run `make repro` and `make test`, and commit the result.")


if __name__ == "__main__":
    run("adopt", main)
