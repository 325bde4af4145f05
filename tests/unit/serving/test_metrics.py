from __future__ import annotations

import numpy as np
from prometheus_client import REGISTRY, CollectorRegistry, Histogram

from credit_risk.schema import contract
from credit_risk.serving.metrics import PROBABILITY_BUCKETS, observe_all, record_scores


def samples(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    return {
        (s.name, s.labels.get("le", "")): s.value
        for metric in registry.collect()
        for s in metric.samples
        if not s.name.endswith("_created")
    }


def test_bulk_observation_equals_single_observations() -> None:
    rng = np.random.default_rng(0)
    # Values exactly on bucket bounds are where an off-by-one would show.
    values = np.concatenate([rng.random(500), np.array(PROBABILITY_BUCKETS), [0.0, 0.0]])
    one_by_one, bulk = CollectorRegistry(), CollectorRegistry()
    single = Histogram("p", "p", buckets=PROBABILITY_BUCKETS, registry=one_by_one)
    for value in values:
        single.observe(float(value))
    observe_all(Histogram("p", "p", buckets=PROBABILITY_BUCKETS, registry=bulk), values)
    expected, got = samples(one_by_one), samples(bulk)
    assert got.keys() == expected.keys()
    sums = got.pop(("p_sum", "")), expected.pop(("p_sum", ""))
    assert got == expected  # every bucket and the count, exactly
    assert abs(sums[0] - sums[1]) < 1e-9  # the sum, up to the order of additions


def test_scores_are_counted_by_model_version_and_decision() -> None:
    above = contract().decisions.at_or_above_threshold
    outcome = contract().target.positive_label
    record_scores("score", "m:test-1", np.array([0.2, 0.7, 0.9]), ["x", above, above])
    labels = {"endpoint": "score", "model_version": "m:test-1"}
    assert REGISTRY.get_sample_value("model_decisions_total", {**labels, "decision": above}) == 2
    assert REGISTRY.get_sample_value("model_probability_count", {**labels, "outcome": outcome}) == 3
    assert REGISTRY.get_sample_value("model_decisions_total", {**labels, "decision": "x"}) == 1
