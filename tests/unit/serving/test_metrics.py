from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry, Histogram

from credit_risk.serving.metrics import PROBABILITY_BUCKETS, observe_all


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
