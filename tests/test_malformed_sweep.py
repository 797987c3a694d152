"""The malformed-body sweep: every MLflow route and the emulator's own API families, on both
workspaces, with bodies that are not what the route takes. None may answer a 5xx other than 501
(clients retry 5xx for minutes): each is a 4xx in the backend's shape, or a 501 for what the
emulator does not serve.

Routes: MLflow's own list (``mlflow.server.handlers.get_endpoints``, as both workspaces serve it)
plus the Databricks, Unity Catalog and Azure ML resource APIs the emulator adds. Found by this
sweep and fixed: JSON bodies on GET routes, GraphQL without a query, a dataset's tags, a v2 trace
without an experiment, MLflow's own 400s raised outside its handlers' catch, MLflow's 503 for its
multi-workspace API and the UI's demo-data generator.
"""

from __future__ import annotations

import re

import pytest
import requests

pytestmark = pytest.mark.shared_emulator  # the session's pair, reset (tests/conftest.py)

BODIES = [b"[]", b"null", b'"x"', b"1", b"{", b'{"name": []}', b'{"experiment_id": {}}', b'{"run_id": [1]}',
          b'{"max_results": "x"}', b'{"path": 7}', b'{"tags": "x"}', b'{"handle": []}',
          b'{"offset": 1180591620717411303424}', b'{"source": []}', b'{"page_token": {}}']
METHODS = ("GET", "POST", "PATCH", "PUT", "DELETE")
DATABRICKS_APIS = [
    *(f"/api/2.0/dbfs/{op}" for op in ("add-block", "close", "create", "delete", "get-status", "list", "mkdirs",
                                        "move", "put", "read")),
    "/api/2.0/fs/create-download-url", "/api/2.0/fs/create-upload-part-urls", "/api/2.0/fs/endpoints",
    "/api/2.0/fs/files/Volumes/main/default/v/x", "/api/2.0/fs/directories/Volumes/main/default/v",
    "/api/2.0/mlflow/artifacts/credentials-for-read", "/api/2.0/mlflow/artifacts/credentials-for-write",
    *(f"/api/2.0/workspace/{op}" for op in ("delete", "get-status", "list", "mkdirs")),
    "/api/2.1/unity-catalog/catalogs", "/api/2.1/unity-catalog/schemas",
    *(f"/api/2.0/mlflow/unity-catalog/{op}" for op in (
        "model-versions/create", "model-versions/finalize", "model-versions/get", "model-versions/search",
        "model-versions/generate-temporary-credentials", "registered-models/create", "registered-models/search",
        "registered-models/alias", "prompts", "prompts/search")),
    "/api/2.1/clusters/get", "/api/2.0/preview/scim/v2/Me",
]
AZUREML_RESOURCES = ("models", "models/x", "models/x/versions", "models/x/versions/1", "onlineEndpoints",
                     "onlineEndpoints/x", "onlineEndpoints/x/deployments", "onlineEndpoints/x/deployments/y",
                     "onlineEndpoints/x/listKeys", "datastores", "datastores/workspaceblobstore")


def _mlflow_routes() -> list[tuple[str, str]]:
    from mlflow.server.handlers import get_endpoints

    return sorted({(m, re.sub(r"<[^>]+>", "x", path)) for path, _, methods in get_endpoints() for m in methods})


def _targets(emulator):
    db, aml = emulator.databricks, emulator.azureml
    arm = (f"/subscriptions/{aml.subscription_id}/resourceGroups/{aml.resource_group}/providers/"
           "Microsoft.MachineLearningServices/workspaces/" + aml.workspace_name)
    yield from ((db.url, db.token, m, p) for m, p in _mlflow_routes())
    yield from ((db.url, db.token, m, p) for p in DATABRICKS_APIS for m in METHODS)
    yield from ((aml.tracking_uri, aml.token, m, p) for m, p in _mlflow_routes())
    yield from ((aml.url, aml.token, m, f"{arm}/{r}?api-version=2023-10-01") for r in AZUREML_RESOURCES for m in METHODS)


def test_no_malformed_body_gets_a_5xx_other_than_501(emulator):
    failures = []
    with requests.Session() as session:
        session.trust_env = False
        for base, token, method, path in _targets(emulator):
            for body in BODIES:
                answer = session.request(method, base + path, data=body, timeout=120,
                                         headers={"Authorization": f"Bearer {token}",
                                                  "Content-Type": "application/json"})
                if answer.status_code >= 500 and answer.status_code != 501:
                    failures.append(f"{answer.status_code} {method} {path} {body!r}: {answer.text[:160]}")
    assert failures == [], f"{len(failures)} non-501 5xx, e.g.:\n" + "\n".join(failures[:25])
