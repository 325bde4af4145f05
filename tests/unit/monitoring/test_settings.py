"""The shipped monitor: settings make sense together (each bad value's error is checked with
every other section's, in tests/unit/test_config.py)."""

from __future__ import annotations


def test_the_shipped_monitor_settings_load(params) -> None:
    settings = params.monitor
    assert getattr(params.paths, settings.reference).suffix == ".parquet"
    assert settings.drift.alarm_features >= 1
    assert {settings.report.suffix, settings.html.suffix, settings.summary.suffix} == {
        ".json",
        ".html",
        ".md",
    }
