"""Drift of the logged inputs from the reference rows, feature by feature.

Each feature the data contract lists is compared by its kind:

- numeric: the two-sample Kolmogorov-Smirnov test, and as effect size the Wasserstein (earth
  mover's) distance in units of the reference's standard deviation: "the values moved by 0.3
  standard deviations" reads the same for ages and for loan amounts;
- categorical: the chi-square test on the table of category counts (reference and window rows),
  and as effect size the population stability index (PSI) of the category shares. Categories
  come from the contract; a value the reference never had (a category the training rows lack,
  or one the contract does not know) is its own column of the table and named in the result.

A feature counts as drifted only when BOTH hold: its test is significant after Holm's
correction across the features tested (nine tests at 1% each would flag something by chance in
one window of eleven), AND its effect size reaches the threshold for its kind. A p-value
measures evidence, not size: with a window of 100,000 rows a shift of a hundredth of a standard
deviation is "significant", yet changes no decision; with 200 rows a real shift may not be. The
effect size says whether the change matters, the test whether it is more than chance.

Why scipy: its tests are the reference implementations, maintained, and already installed with
scikit-learn. Evidently, the usual drift library, was evaluated: its latest release (0.7.23)
fails to import with this project's pandas 3 (``ImportError: cannot import name
'infer_dtype_from_object'``), and the two tests and two effect sizes here take a page of code.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from credit_risk.config import MonitorDrift
from credit_risk.schema import ColumnSpec, column_specs, feature_columns

# The share given to a category one side has no rows of, so that PSI stays finite; an empty
# category on one side and 1% on the other still adds about 0.05 to the PSI.
PSI_FLOOR = 1e-4


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's comparison: the test, its effect size, and the verdict."""

    feature: str
    kind: str  # "numeric" or "categorical", as the contract says
    test: str
    statistic: float
    p_value: float
    p_adjusted: float  # Holm-adjusted across the features tested
    effect_name: str
    effect: float
    effect_threshold: float
    significant: bool
    drifted: bool  # significant and effect >= effect_threshold
    reference_rows: int
    current_rows: int
    unseen: list[str] = field(default_factory=list)  # window values the reference never had

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DriftResult:
    """Every feature's comparison (drifted ones first), and what the window did not hold."""

    features: list[FeatureDrift]
    not_logged: list[str]  # contract features absent from the window (e.g. protected ones)

    @property
    def drifted(self) -> list[str]:
        return [result.feature for result in self.features if result.drifted]


@dataclass(frozen=True)
class _Raw:
    test: str
    statistic: float
    p_value: float
    effect_name: str
    effect: float
    unseen: list[str]


def numeric_drift(reference: pd.Series, current: pd.Series) -> _Raw:
    """Kolmogorov-Smirnov test; Wasserstein distance over the reference's standard deviation."""
    ref = reference.dropna().to_numpy(dtype=float)
    cur = current.dropna().to_numpy(dtype=float)
    test = stats.ks_2samp(ref, cur)
    spread = float(np.std(ref))
    # A constant reference column has no spread to measure by: then the distance is in the
    # column's own units (any move away from the constant is a large effect).
    distance = float(stats.wasserstein_distance(ref, cur))
    effect = distance / spread if spread > 0 else distance
    return _Raw(
        "kolmogorov_smirnov",
        float(test.statistic),
        float(test.pvalue),
        "wasserstein_in_std",
        effect,
        [],
    )


def category_counts(
    reference: pd.Series, current: pd.Series, known: tuple[Any, ...]
) -> tuple[pd.DataFrame, list[str]]:
    """Counts per category (rows: reference, current), the contract's order then unseen ones;
    categories neither side has are left out. Values compare as text, so an integer-coded
    category logged as a number and stored as a number match either way."""
    ref = reference.dropna().astype(str).value_counts()
    cur = current.dropna().astype(str).value_counts()
    order = [str(value) for value in known]
    extra = sorted((set(ref.index) | set(cur.index)) - set(order))
    columns = [name for name in [*order, *extra] if ref.get(name, 0) + cur.get(name, 0) > 0]
    table = pd.DataFrame(
        [
            [int(ref.get(name, 0)) for name in columns],
            [int(cur.get(name, 0)) for name in columns],
        ],
        index=["reference", "current"],
        columns=columns,
    )
    unseen = [name for name in columns if ref.get(name, 0) == 0]
    return table, unseen


def population_stability_index(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """PSI = sum((current share - reference share) * ln(current share / reference share))."""
    ref = np.maximum(reference_counts / max(reference_counts.sum(), 1), PSI_FLOOR)
    cur = np.maximum(current_counts / max(current_counts.sum(), 1), PSI_FLOOR)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def categorical_drift(reference: pd.Series, current: pd.Series, known: tuple[Any, ...]) -> _Raw:
    """Chi-square test of homogeneity on the category counts; PSI of the category shares."""
    table, unseen = category_counts(reference, current, known)
    counts = table.to_numpy(dtype=float)
    if counts.shape[1] < 2:  # one category on both sides: nothing can differ
        statistic, p_value = 0.0, 1.0
    else:
        test = stats.chi2_contingency(counts, correction=False)
        statistic, p_value = float(test.statistic), float(test.pvalue)
    return _Raw(
        "chi_square",
        statistic,
        p_value,
        "population_stability_index",
        population_stability_index(counts[0], counts[1]),
        unseen,
    )


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment: controls the chance of any false flag across the tests."""
    count = len(p_values)
    order = np.argsort(p_values, kind="stable")
    adjusted = [0.0] * count
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (count - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def compare(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    settings: MonitorDrift,
    specs: dict[str, ColumnSpec] | None = None,
) -> DriftResult:
    """Compare every contract feature the window holds; drifted features first, then by effect.

    ``reference`` holds the rows the model learned from; ``current`` the logged inputs of the
    window (any extra columns are ignored). Columns and kinds come from the data contract.
    """
    specs = specs or column_specs()
    features = [name for name in feature_columns() if name in specs]
    # A column the window does not hold, or holds no value of, has nothing to compare.
    tested = [
        name
        for name in features
        if name in current.columns
        and name in reference.columns
        and current[name].notna().any()
        and reference[name].notna().any()
    ]
    raw: dict[str, _Raw] = {}
    for name in tested:
        spec = specs[name]
        if spec.kind == "numeric":
            raw[name] = numeric_drift(reference[name], current[name])
        else:
            raw[name] = categorical_drift(reference[name], current[name], spec.allowed or ())
    adjusted = dict(zip(tested, holm([raw[name].p_value for name in tested]), strict=True))
    results = []
    for name in tested:
        found = raw[name]
        numeric = specs[name].kind == "numeric"
        threshold = settings.numeric_effect if numeric else settings.categorical_effect
        significant = adjusted[name] <= settings.p_value
        results.append(
            FeatureDrift(
                feature=name,
                kind=specs[name].kind,
                test=found.test,
                statistic=round(found.statistic, 6),
                p_value=float(f"{found.p_value:.6g}"),
                p_adjusted=float(f"{adjusted[name]:.6g}"),
                effect_name=found.effect_name,
                effect=round(found.effect, 6),
                effect_threshold=threshold,
                significant=significant,
                drifted=significant and found.effect >= threshold,
                reference_rows=int(reference[name].notna().sum()),
                current_rows=int(current[name].notna().sum()),
                unseen=found.unseen,
            )
        )
    results.sort(key=lambda r: (not r.drifted, -r.effect / r.effect_threshold))
    return DriftResult(results, [name for name in features if name not in tested])
