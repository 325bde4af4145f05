"""Build the bento once: the service, the exact model it serves, and pinned packages.

    python -m credit_risk.serving.bento build                 # the pipeline's current model
    python -m credit_risk.serving.bento build --registered-model credit-risk --alias production
    python -m credit_risk.serving.bento model credit-risk:<version>   # the model a bento pins

`build` prints the bento's tag. What gets packaged is configured in pyproject.toml
([tool.bentoml.build]); the packages are requirements-serve.lock, pinned with hashes. The bento
carries, as bento arguments, the exact model tag and the `serve` settings, so that
`bentoml serve <bento>` (and its container) needs no variable, no params.yaml and no network.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import bentoml
from bentoml._internal.configuration.containers import BentoMLContainer

from credit_risk.config import Serve, load_params
from credit_risk.errors import CreditRiskError
from credit_risk.serving import PROTECTED_ARGUMENT
from credit_risk.serving.model_store import import_from_pipeline, import_from_registry
from credit_risk.stage import run

SERVICE_MODULE = "credit_risk.serving.service"  # [tool.bentoml.build] service, in pyproject.toml


def build(model_tag: str, settings: Serve, protected: Sequence[str] | None = None) -> str:
    """Build a bento serving ``model_tag`` with ``settings``; return the bento's tag.

    ``protected``: the protected attributes, which the prediction log leaves out unless
    ``settings.prediction_log.keep_attributes`` names them (default: ./params.yaml's).
    """
    if protected is None:
        protected = list(load_params().evaluate.protected_attributes)
    arguments = {
        "model_tag": model_tag,
        "serve": settings.model_dump(mode="json"),
        PROTECTED_ARGUMENT: list(protected),
    }
    # The service module reads its model tag from the bento arguments when imported, and
    # BentoML keeps a build's arguments for the rest of the process: import the service afresh
    # for this build, and afterwards leave the process as it was (arguments and modules), so
    # a later build or import in it sees its own model, not this one.
    previous = dict(BentoMLContainer.bento_arguments.get())
    sys.modules.pop(SERVICE_MODULE, None)
    try:
        return str(bentoml.bentos.build_bentofile(build_ctx=".", args=arguments).tag)
    finally:
        BentoMLContainer.bento_arguments.set(previous)
        sys.modules.pop(SERVICE_MODULE, None)


def pinned_model(bento_tag: str) -> str:
    """The model tag a built bento was built with."""
    try:
        info = bentoml.get(bento_tag).info
    except bentoml.exceptions.NotFound:
        raise CreditRiskError(f"no bento {bento_tag} in the local store (bentoml list)") from None
    except ValueError as problem:  # not even the shape of a tag
        raise CreditRiskError(f"{bento_tag!r} is not a bento tag: {problem}") from None
    models = [model.tag for service in info.services for model in service.models]
    if len(models) != 1:
        raise CreditRiskError(f"bento {bento_tag} pins {len(models)} models, expected one")
    return str(models[0])


def main() -> None:
    parser = argparse.ArgumentParser(description="Build the service's bento, or inspect one.")
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("build", help="import a model and build a bento that serves it")
    make.add_argument("--registered-model", metavar="NAME", help="an MLflow registered model")
    which = make.add_mutually_exclusive_group()
    which.add_argument("--alias", help="registry alias, e.g. production")
    which.add_argument("--version", type=int, help="registry version number")
    model = commands.add_parser("model", help="print the model tag a bento pins")
    model.add_argument("bento", help="a bento tag, e.g. credit-risk:abc123")
    args = parser.parse_args()
    if args.command == "model":
        print(pinned_model(args.bento))
        return
    params = load_params()
    if args.registered_model:
        stored = import_from_registry(params, args.registered_model, args.alias, args.version)
    elif args.alias is not None or args.version is not None:
        parser.error("--alias/--version go with --registered-model")
    else:
        stored = import_from_pipeline(params)
    print(build(str(stored.tag), params.serve, list(params.evaluate.protected_attributes)))


if __name__ == "__main__":
    run("bento", main)
