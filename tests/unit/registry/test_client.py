from __future__ import annotations

import socket
import time

import pytest

from credit_risk.registry.client import RegistryError, connect


def test_an_unreachable_registry_is_one_clear_error_within_seconds(monkeypatch) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    started = time.monotonic()
    expected = rf"registry at http://127\.0\.0\.1:{port} does not answer"
    with pytest.raises(RegistryError, match=expected):
        connect("any-experiment")
    assert time.monotonic() - started < 10
