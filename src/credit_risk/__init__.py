"""Credit-risk scoring: a reproducible pipeline from raw applicant data to a served model."""

import os

__version__ = "0.1.0"

# The pipeline makes no network calls of its own: opt out of the libraries' usage telemetry
# before any of them is imported (setdefault, so a user can still opt in explicitly).
for _variable in ("MLFLOW_DISABLE_TELEMETRY", "BENTOML_DO_NOT_TRACK"):
    os.environ.setdefault(_variable, "true")
# Model files come from the registry in a blink; progress bars only clutter logs and CI output.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
