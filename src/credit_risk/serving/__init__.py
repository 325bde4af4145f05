"""Serving: the BentoML service and what it is built from (model store import, API types)."""

MODEL_TAG_VARIABLE = "CREDIT_RISK_MODEL_TAG"  # the exact stored model a service instance serves
PARAMS_VARIABLE = "CREDIT_RISK_PARAMS"  # params.yaml to read the `serve` section from
PROTECTED_ARGUMENT = "protected_attributes"  # bento argument: evaluate.protected_attributes
