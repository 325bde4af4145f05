"""The service's own Prometheus metrics, served by BentoML on /metrics beside its built-ins."""

from __future__ import annotations

import collections
from collections.abc import Sequence

import numpy as np
from prometheus_client import Counter, Histogram

from credit_risk.schema import contract

PROBABILITY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)

# Named for what they measure, not the example's domain: the contract's outcome and decision
# words are label values, so dashboards and alerts carry over to an adopted data set.
probability_histogram = Histogram(
    name="model_probability",
    documentation="Predicted probability of the positive outcome, per scored record",
    labelnames=["endpoint", "model_version", "outcome"],
    buckets=PROBABILITY_BUCKETS,
)
decision_counter = Counter(
    name="model_decisions_total",
    documentation="Scored records by decision",
    labelnames=["endpoint", "model_version", "decision"],
)


def observe_all(histogram: Histogram, values: np.ndarray) -> None:
    """Observe many values at once: one update per bucket, not one per value.

    prometheus_client has no bulk observe, and per-value updates of its multiprocess store cost
    more than scoring a 1,000-row batch. This adds each bucket's count in one step, exactly as
    that many single observations would (tests compare the two).
    """
    try:
        bounds, buckets, total = histogram._upper_bounds, histogram._buckets, histogram._sum
    except AttributeError:  # a prometheus_client without these internals: the slow, safe way
        for value in values:
            histogram.observe(float(value))
        return
    # An observation lands in the first bucket whose upper bound is >= the value.
    counts = np.bincount(np.searchsorted(bounds, values, side="left"), minlength=len(bounds))
    for bucket, count in zip(buckets, counts, strict=False):
        if count:
            bucket.inc(int(count))
    total.inc(float(np.sum(values)))


def record_scores(
    endpoint: str, model_version: str, probabilities: np.ndarray, decisions: Sequence[str]
) -> None:
    outcome = contract().target.positive_label
    histogram = probability_histogram.labels(endpoint, model_version, outcome)
    observe_all(histogram, probabilities)
    for decision, count in collections.Counter(decisions).items():
        decision_counter.labels(endpoint, model_version, decision).inc(count)
