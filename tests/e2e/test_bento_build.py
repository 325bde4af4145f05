"""`bentoml build`: the bento pins the exact model and hash-pinned serving packages only."""

from __future__ import annotations

from pathlib import Path

import bentoml
import pytest

from credit_risk.serving.bento import build, pinned_model

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_bento_pins_the_model_and_the_packages(
    model_tag: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    bento_tag = build(model_tag)

    assert pinned_model(bento_tag) == model_tag
    folder = Path(bentoml.get(bento_tag).path)
    requirements = (folder / "env" / "python" / "requirements.txt").read_text()
    pins = [line.split("==")[0] for line in requirements.splitlines() if "==" in line]
    assert {"scikit-learn", "pandas", "pandera", "bentoml"} <= set(pins)
    assert not {"mlflow", "dvc", "matplotlib", "pytest"} & set(pins), "pipeline/dev packages leaked"
    assert "--hash=sha256:" in requirements
    assert (folder / "src" / "params.yaml").is_file()
    assert (folder / "src" / "credit_risk" / "serving" / "service.py").is_file()


def test_unknown_bento_is_a_clear_error() -> None:
    from credit_risk.errors import CreditRiskError

    with pytest.raises(CreditRiskError, match="no bento credit-risk:nope"):
        pinned_model("credit-risk:nope")
