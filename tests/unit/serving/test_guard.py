from __future__ import annotations

import json

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from credit_risk.serving.guard import ERROR_SCHEMA, RequestGuard

SPEC = {
    "paths": {"/score": {"post": {"requestBody": {"content": {}}}}},
    "components": {"schemas": {"InvalidArgument": {"type": "string"}, "Other": {"type": "int"}}},
}


async def echo(request: Request) -> JSONResponse:
    return JSONResponse({"received": len(await request.body())})


async def docs(_: Request) -> JSONResponse:
    return JSONResponse(json.loads(json.dumps(SPEC)))


@pytest.fixture
def client() -> TestClient:
    app = Starlette(routes=[Route("/score", echo, methods=["POST"]), Route("/docs.json", docs)])
    app.add_middleware(RequestGuard, max_body_bytes=100)
    return TestClient(app)


def test_json_within_the_limit_passes_unchanged(client: TestClient) -> None:
    response = client.post(
        "/score", content=b'{"a": 1}', headers={"content-type": "application/json"}
    )
    assert response.status_code == 200 and response.json() == {"received": 8}


@pytest.mark.parametrize("content_type", ["text/plain", "multipart/form-data", ""])
def test_other_content_types_get_415(client: TestClient, content_type: str) -> None:
    response = client.post("/score", content=b"{}", headers={"content-type": content_type})
    assert response.status_code == 415
    assert "application/json" in response.json()["error"]


def test_declared_large_body_gets_413(client: TestClient) -> None:
    response = client.post(
        "/score", content=b"x" * 101, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413


def test_streamed_large_body_gets_413(client: TestClient) -> None:
    def chunks():
        for _ in range(5):
            yield b"x" * 30

    response = client.post("/score", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413


def test_spec_is_corrected(client: TestClient) -> None:
    spec = client.get("/docs.json").json()
    assert spec["components"]["schemas"]["InvalidArgument"] == ERROR_SCHEMA
    assert spec["components"]["schemas"]["Other"] == {"type": "int"}
    assert spec["paths"]["/score"]["post"]["requestBody"]["required"] is True
