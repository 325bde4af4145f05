"""The artifact bucket on the stack's S3 endpoint: created at start, copied to disk at stop.

moto's S3 server keeps objects in memory only. The stack copies the bucket to a folder before
stopping moto and puts the objects back after starting it, so artifacts outlive a clean
restart; objects written after the last start are lost if moto's process dies instead.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path, PurePosixPath
from typing import Any

log = logging.getLogger(__name__)

# moto accepts any credentials; these are the fake ones its documentation uses. Only the mlflow
# server and this module talk to S3: MLflow clients go through the server.
MOTO_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def client(endpoint: str) -> Any:
    """A boto3 S3 client for ``endpoint`` with moto's fake credentials (no profile, no config)."""
    import boto3  # type: ignore[import-untyped]  # no type stubs; imported when first needed
    from botocore.config import Config  # type: ignore[import-untyped]

    return boto3.session.Session(
        aws_access_key_id=MOTO_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=MOTO_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=MOTO_CREDENTIALS["AWS_DEFAULT_REGION"],
    ).client("s3", endpoint_url=endpoint, config=Config(retries={"max_attempts": 3}))


def restore(endpoint: str, bucket: str, saved: Path) -> int:
    """Create ``bucket`` and upload the objects saved in ``saved``; return how many."""
    s3 = client(endpoint)
    s3.create_bucket(Bucket=bucket)
    files = sorted(path for path in saved.rglob("*") if path.is_file())
    for path in files:
        s3.upload_file(str(path), bucket, path.relative_to(saved).as_posix())
    if files:
        log.info("s3: %d objects put back into %s from %s", len(files), bucket, saved)
    return len(files)


def save(endpoint: str, bucket: str, target: Path) -> int:
    """Copy every object of ``bucket`` into ``target``, replacing it once the copy is complete."""
    s3 = client(endpoint)
    fresh, old = target.with_name(f"{target.name}.new"), target.with_name(f"{target.name}.old")
    shutil.rmtree(fresh, ignore_errors=True)
    fresh.mkdir(parents=True)
    saved = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            path = file_for(fresh, item["Key"])
            if path is None:
                log.warning("s3: key %r cannot be a file name; not saved", item["Key"])
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, item["Key"], str(path))
            saved += 1
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    fresh.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    log.info("s3: %d objects of %s saved to %s", saved, bucket, target)
    return saved


def file_for(root: Path, key: str) -> Path | None:
    """Where the object ``key`` is saved under ``root``; None for keys no file path can hold."""
    parts = PurePosixPath(key).parts
    plain = bool(key) and not key.startswith("/") and not key.endswith("/") and "//" not in key
    if not plain or any(part in (".", "..") for part in parts):
        return None
    return root.joinpath(*parts)


def leftovers(target: Path) -> tuple[Path, ...]:
    """The folders ``save`` works in besides ``target`` (for a purge)."""
    return target.with_name(f"{target.name}.new"), target.with_name(f"{target.name}.old")
