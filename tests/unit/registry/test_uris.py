from __future__ import annotations

import pytest

from credit_risk.errors import ConfigError
from credit_risk.registry.uris import check_alias, model_uri, run_model_uri


def test_a_model_uri_never_floats() -> None:
    assert model_uri("m", alias="production") == "models:/m@production"
    assert model_uri("m", version=3) == "models:/m/3"
    for bad in ({}, {"alias": "a", "version": 1}, {"alias": "latest"}, {"version": 0}):
        with pytest.raises(ConfigError):
            model_uri("m", **bad)


@pytest.mark.parametrize("alias", ["Latest", "prod uction", "", "-staging"])
def test_malformed_aliases_are_refused(alias: str) -> None:
    with pytest.raises(ConfigError):
        check_alias(alias)


def test_a_run_uri_needs_a_run_id() -> None:
    assert run_model_uri("0" * 32) == f"runs:/{'0' * 32}/model"
    with pytest.raises(ConfigError, match="not an MLflow run id"):
        run_model_uri("../../etc")
