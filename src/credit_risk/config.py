"""params.yaml, parsed once into a frozen, strict model.

Unknown or misspelled keys are errors that name the key; so are values of the wrong type or out
of range. Every stage reads its settings from here and nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from credit_risk.schema import column_specs, feature_columns, target_column
from credit_risk.yamlfile import load_yaml_model

DEFAULT_PARAMS = Path("params.yaml")

Probability = Annotated[float, Field(gt=0.0, lt=1.0)]
MAX_SYNTHETIC_ROWS = 50_000_000  # generated in memory: about 0.3 GB per million rows
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]  # what numpy and scikit-learn accept


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Paths(Strict):
    """Where each pipeline file lives; dvc.yaml reads the same keys (``${paths.x}``)."""

    raw: Path
    validated: Path
    validation_report: Path
    train: Path
    test: Path
    model: Path
    model_info: Path
    background: Path
    metrics: Path
    fairness: Path
    importance: Path
    plots: Path
    figures: Path
    gate_report: Path  # the gate's verdict for machines (JSON), written by `make gate`
    gate_summary: Path  # the same verdict for people (Markdown, the pull-request comment's)
    pr_report: Path  # the pull-request comment: this branch against its base and production


class NumericShift(Strict):
    """Move a numeric feature: new = old * scale + add (then clipped to the contract's range)."""

    add: float = 0.0
    scale: Annotated[float, Field(gt=0.0)] = 1.0


class CategoricalShift(Strict):
    """Draw a categorical feature with these relative weights instead of the usual ones."""

    weights: dict[str, Annotated[float, Field(ge=0.0)]]


class Synthetic(Strict):
    rows: Annotated[int, Field(ge=50, le=MAX_SYNTHETIC_ROWS)]
    seed: Seed
    shift: dict[str, NumericShift | CategoricalShift] = {}

    @model_validator(mode="after")
    def _shift_names_contract_columns(self) -> Synthetic:
        check_shift(self.shift)
        return self


def check_shift(shift: Mapping[str, object]) -> None:
    """Each shift names a feature and suits its kind; a ValueError names the key otherwise."""
    specs = column_specs()
    for name, change in shift.items():
        spec = specs.get(name)
        if spec is None or name == target_column():
            raise ValueError(f"shift: {name!r} is not a feature; features: {feature_columns()}")
        if isinstance(change, NumericShift):
            if spec.kind != "numeric":
                raise ValueError(f"shift.{name}: {name} is categorical; give 'weights'")
            if not (math.isfinite(change.add) and math.isfinite(change.scale)):
                raise ValueError(f"shift.{name}: add and scale must be finite")
        elif isinstance(change, CategoricalShift):
            if spec.kind != "categorical":
                raise ValueError(f"shift.{name}: {name} is numeric; give 'add' and/or 'scale'")
            unknown = sorted(set(change.weights) - {str(v) for v in spec.allowed or ()})
            if unknown:
                raise ValueError(f"shift.{name}.weights: unknown categories {unknown}")
            weights = list(change.weights.values())
            if not all(math.isfinite(w) and w >= 0 for w in weights) or sum(weights) <= 0:
                raise ValueError(f"shift.{name}.weights: finite, >= 0, and at least one > 0")
        else:
            kind = type(change).__name__
            raise ValueError(f"shift.{name}: expected NumericShift or CategoricalShift, got {kind}")


class Ingest(Strict):
    source: Literal["file", "synthetic"]
    file: Path
    synthetic: Synthetic


class Validate(Strict):
    max_examples: Annotated[int, Field(ge=1, le=100)]


class Split(Strict):
    test_size: Probability
    seed: Seed


class ModelParams(Strict):
    """Hyper-parameters of one model type; ``estimator`` is the scikit-learn class they build."""

    estimator: ClassVar[type]


class LogisticRegressionParams(ModelParams):
    estimator = LogisticRegression
    C: Annotated[float, Field(gt=0.0)]
    class_weight: Literal["balanced"] | None
    max_iter: Annotated[int, Field(ge=10)]


class RandomForestParams(ModelParams):
    estimator = RandomForestClassifier
    n_estimators: Annotated[int, Field(ge=1)]
    max_depth: Annotated[int, Field(ge=1)] | None
    min_samples_leaf: Annotated[int, Field(ge=1)]
    class_weight: Literal["balanced", "balanced_subsample"] | None
    n_jobs: int


class HistGradientBoostingParams(ModelParams):
    estimator = HistGradientBoostingClassifier
    learning_rate: Annotated[float, Field(gt=0.0, le=1.0)]
    max_iter: Annotated[int, Field(ge=1)]
    max_leaf_nodes: Annotated[int, Field(ge=2)]
    l2_regularization: Annotated[float, Field(ge=0.0)]
    class_weight: Literal["balanced"] | None


class Calibration(Strict):
    """How the classifier's scores become probabilities.

    Class weights (the default models use them) and many learners give scores that rank well but
    are not probabilities; the service calls its output a probability, and the gate checks it.
    ``sigmoid`` (Platt) or ``isotonic`` fit a monotone map on out-of-fold predictions of
    ``folds`` cross-validation folds; the model itself is then fitted on every training row.
    ``none`` serves the classifier's own scores.
    """

    method: Literal["sigmoid", "isotonic", "none"]
    folds: Annotated[int, Field(ge=2, le=20)]


class Train(Strict):
    """The model type is the name of one of the sections below: they are the list of types."""

    model: str
    seed: Seed
    decision_threshold: Probability
    calibration: Calibration
    drop_features: list[str]
    explain_background_rows: Annotated[int, Field(ge=1, le=1000)]
    logistic_regression: LogisticRegressionParams
    random_forest: RandomForestParams
    hist_gradient_boosting: HistGradientBoostingParams

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        if value not in MODEL_TYPES:
            raise ValueError(f"unknown model type {value!r}; one of {list(MODEL_TYPES)}")
        return value

    @field_validator("drop_features")
    @classmethod
    def _known_features(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(feature_columns()))
        if unknown:
            raise ValueError(f"unknown features {unknown}; features: {feature_columns()}")
        if len(set(value)) == len(feature_columns()):
            raise ValueError("drops every feature; at least one must remain")
        return value

    def model_params(self) -> dict[str, Any]:
        """The hyper-parameters of the chosen model type."""
        return self.chosen().model_dump()

    def chosen(self) -> ModelParams:
        """The settings section of the chosen model type."""
        chosen: ModelParams = getattr(self, self.model)
        return chosen


# Every model type a run can choose: the ModelParams sections of Train, in declaration order.
MODEL_TYPES: tuple[str, ...] = tuple(
    name
    for name, field in Train.model_fields.items()
    if isinstance(field.annotation, type) and issubclass(field.annotation, ModelParams)
)


BandEdges = list[int | float] | None  # numeric band edges, or None to group by value


class Evaluate(Strict):
    protected_attributes: dict[str, BandEdges]
    importance_repeats: Annotated[int, Field(ge=1, le=100)]
    importance_max_rows: Annotated[int, Field(ge=50)]
    seed: Seed

    @field_validator("protected_attributes")
    @classmethod
    def _known_columns(cls, value: dict[str, BandEdges]) -> dict[str, BandEdges]:
        specs = column_specs()
        for name, edges in value.items():
            if name not in specs or name == target_column():
                raise ValueError(f"{name!r} is not a feature; features: {feature_columns()}")
            if edges is not None:
                if specs[name].kind != "numeric":
                    raise ValueError(f"{name}: band edges given for a categorical column")
                if not edges or sorted(set(edges)) != edges:
                    raise ValueError(f"{name}: band edges must be strictly increasing")
        return value


FairnessMetric = Literal[
    "roc_auc",
    "brier",
    "accuracy",
    "f1",
    "true_positive_rate",
    "false_positive_rate",
    "selection_rate",
]


class FairnessRule(Strict):
    """The largest gap of one per-group metric, between the groups of each protected attribute
    (evaluate.protected_attributes) that hold at least ``min_group_rows`` held-out rows."""

    metric: FairnessMetric
    max_gap: Annotated[float, Field(gt=0.0, le=1.0)]
    min_group_rows: Annotated[int, Field(ge=1)]


class NoRegression(Strict):
    """How much worse than the production model, on the same rows, a candidate may be."""

    max_roc_auc_drop: Annotated[float, Field(ge=0.0, le=1.0)]
    max_brier_rise: Annotated[float, Field(ge=0.0, le=1.0)]


class Gate(Strict):
    """What a model must reach before it may ship: `make gate` judges it (credit_risk/gate)."""

    min_roc_auc: Annotated[float, Field(ge=0.5, le=1.0)]
    max_brier: Annotated[float, Field(gt=0.0, le=1.0)]
    max_calibration_error: Annotated[float, Field(gt=0.0, le=1.0)]
    fairness: FairnessRule
    no_regression: NoRegression


class Tracking(Strict):
    experiment: Annotated[str, Field(min_length=1)]


class PredictionLog(Strict):
    """The service's prediction log (credit_risk/monitoring/predictions.py): every scored record
    with its inputs, for the drift monitor and for outcomes that arrive later."""

    enabled: bool  # false: nothing is logged and /outcomes answers 404
    folder: Path  # relative to the service's working directory; CREDIT_RISK_PREDICTION_LOG wins
    retention_days: Annotated[int, Field(ge=1, le=3650)]  # day partitions older than this go
    max_outcome_age_days: Annotated[int, Field(ge=1, le=3650)]  # outcomes for older scores: 404
    # Protected attributes (evaluate.protected_attributes) written to the log; the others are
    # left out of it even when the request gives them.
    keep_attributes: list[str]
    fsync: bool  # true: each record survives a power loss too, at a disk flush per request

    @field_validator("keep_attributes")
    @classmethod
    def _known_features(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(feature_columns()))
        if unknown:
            raise ValueError(f"unknown features {unknown}; features: {feature_columns()}")
        return value

    @model_validator(mode="after")
    def _outcomes_within_retention(self) -> PredictionLog:
        if self.max_outcome_age_days > self.retention_days:
            raise ValueError(
                "max_outcome_age_days must not exceed retention_days (the scores are gone)"
            )
        return self


class Serve(Strict):
    model_name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")]
    max_batch_size: Annotated[int, Field(ge=1, le=100_000)]
    max_body_bytes: Annotated[int, Field(ge=1024)]
    workers: Annotated[int, Field(ge=1, le=64)]
    threads: Annotated[int, Field(ge=1, le=256)]
    timeout_seconds: Annotated[int, Field(ge=1, le=3600)]
    prediction_log: PredictionLog


class MonitorDrift(Strict):
    """When a feature of the logged inputs counts as drifted from the reference rows.

    Both must hold: the test is significant (Kolmogorov-Smirnov for numeric features,
    chi-square for categorical ones, p-values adjusted across features by Holm's method) and
    the effect is large enough (Wasserstein distance over the reference's standard deviation;
    population stability index). A large window makes trivial shifts significant; the effect
    size keeps them from raising an alarm.
    """

    p_value: Annotated[float, Field(gt=0.0, le=0.5)]
    numeric_effect: Annotated[float, Field(gt=0.0, le=10.0)]
    categorical_effect: Annotated[float, Field(gt=0.0, le=10.0)]
    alarm_features: Annotated[int, Field(ge=1)]


class MonitorPerformance(Strict):
    """Live quality, once enough outcomes are known, against the evaluation (paths.metrics)."""

    min_outcomes: Annotated[int, Field(ge=10)]
    max_roc_auc_drop: Annotated[float, Field(ge=0.0, le=1.0)]
    max_brier_rise: Annotated[float, Field(ge=0.0, le=1.0)]
    max_fairness_gap: Annotated[float, Field(gt=0.0, le=1.0)]
    # Groups with fewer labelled rows are listed, not judged. Larger than the gate's: a live
    # window's small groups would raise false alarms (a rate from a dozen outcomes is noise).
    min_group_rows: Annotated[int, Field(ge=1)]


class MonitorRetrain(Strict):
    """`make retrain-data`: a window's labelled predictions, appended to the rows the model
    learned from, become the next training source."""

    folder: Path  # where each new source and its record go (the data files tracked by DVC)
    min_rows: Annotated[int, Field(ge=1)]  # fewer labelled predictions: nothing is written


class Monitor(Strict):
    """`make monitor`: the prediction log's recent window against the reference rows."""

    window_days: Annotated[int, Field(ge=1, le=366)]
    reference: Literal["train", "test", "validated"]  # a key of paths: the rows to compare with
    report: Path  # the verdict for machines (JSON)
    html: Path  # the report for people: one self-contained HTML file
    summary: Path  # the verdict in Markdown (a workflow's issue body)
    min_rows: Annotated[int, Field(ge=10)]
    drift: MonitorDrift
    performance: MonitorPerformance
    retrain: MonitorRetrain


class Params(Strict):
    paths: Paths
    ingest: Ingest
    validate_: Validate = Field(alias="validate")
    split: Split
    train: Train
    evaluate: Evaluate
    gate: Gate
    tracking: Tracking
    serve: Serve
    monitor: Monitor


def load_params(path: Path = DEFAULT_PARAMS) -> Params:
    """Read and check params.yaml; every problem is a ConfigError naming the key."""
    return load_yaml_model(
        path, Params, "parameters", "file not found (run from the repository root)"
    )
