"""ARM lists on the Azure ML workspace page, order and filter as azure-ai-ml asks them to.

azure-ai-ml 1.35.2 resolves ``label="latest"`` / ``name@latest`` by listing model versions with
``$orderBy=createdtime desc&$top=1`` and taking the first item (``_asset_utils._get_latest``); its
pagers follow ``nextLink``. Before the fix every list answered all items oldest first with no
``nextLink``, so "latest" was version 1.
"""

from __future__ import annotations

import os
import uuid
from unittest import mock

import pytest
import requests
from mlflow import MlflowClient

from emulator.services.azureml.arm_paging import PAGE_SIZE_ENV
from harness.online_endpoints import OnlineEndpointsClient
from harness.workspaces import Emulator

VERSIONS = 4
PAGE_SIZE = 2  # the server's, through PAGE_SIZE_ENV: two pages of versions


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    with mock.patch.dict(os.environ, {PAGE_SIZE_ENV: str(PAGE_SIZE)}):
        emu = Emulator(tmp_path_factory.mktemp("arm-lists")).up()
    yield emu
    emu.down()


def _arm(aml, path: str, **params) -> requests.Response:
    scope = (f"/subscriptions/{aml.subscription_id}/resourceGroups/{aml.resource_group}"
             f"/providers/Microsoft.MachineLearningServices/workspaces/{aml.workspace_name}")
    return requests.get(f"{aml.url}{scope}{path}", params={"api-version": "2025-12-01", **params},
                        headers={"Authorization": f"Bearer {aml.token}"}, timeout=30)


def _follow(aml, first: requests.Response) -> list[list[str]]:
    """The names on every page, following nextLink the way azure-core's pager does."""
    pages, resp = [], first
    while True:
        assert resp.status_code == 200, resp.text
        body = resp.json()
        pages.append([v["name"] for v in body["value"]])
        if not body.get("nextLink"):
            return pages
        assert len(pages) < 50, "nextLink never ends"
        resp = requests.get(body["nextLink"], headers={"Authorization": f"Bearer {aml.token}"}, timeout=30)


@pytest.fixture(scope="module")
def model(emulator, tmp_path_factory):
    """A registered model with VERSIONS versions (plain files: the ARM lists never load them)."""
    aml = emulator.azureml
    name = f"paged-{uuid.uuid4().hex[:6]}"
    with mock.patch.dict(os.environ, {"MLFLOW_TRACKING_TOKEN": aml.token}):
        client = MlflowClient(aml.tracking_uri, aml.tracking_uri)
        client.create_registered_model(name)
        exp = client.create_experiment(f"paged-{uuid.uuid4().hex[:6]}")
        for _ in range(VERSIONS):
            run = client.create_run(exp)
            path = tmp_path_factory.mktemp("model") / "MLmodel"
            path.write_text("flavors: {}\n")
            client.log_artifact(run.info.run_id, str(path), "model")
            client.create_model_version(name, f"{run.info.artifact_uri}/model", run.info.run_id)
    return name


def test_latest_is_the_newest_version(emulator, model):
    aml = emulator.azureml
    # The exact query azure-ai-ml sends for label="latest" and azureml:<name>@latest.
    latest = _arm(aml, f"/models/{model}/versions", **{"$orderBy": "createdtime desc", "$top": "1"})
    assert latest.status_code == 200, latest.text
    assert [v["name"] for v in latest.json()["value"]] == [str(VERSIONS)]
    assert latest.json()["nextLink"] is None  # $top caps the listing, not just the page
    oldest = _arm(aml, f"/models/{model}/versions", **{"$orderBy": "createdtime asc", "$top": "2"})
    assert [v["name"] for v in oldest.json()["value"]] == ["1", "2"] and oldest.json()["nextLink"] is None
    assert [v["name"] for v in _arm(aml, f"/models/{model}/versions", version="2").json()["value"]] == ["2"]
    assert _arm(aml, f"/models/{model}/versions", listViewType="ArchivedOnly").json()["value"] == []
    assert [v["name"] for v in _arm(aml, f"/models/{model}/versions", listViewType="All").json()["value"]] == \
        ["1", "2"]  # the first page, oldest first as before


def test_pages_follow_next_link(emulator, model):
    aml = emulator.azureml
    newest_first = [str(v) for v in range(VERSIONS, 0, -1)]
    pages = _follow(aml, _arm(aml, f"/models/{model}/versions", **{"$orderBy": "createdtime desc"}))
    assert pages == [newest_first[:PAGE_SIZE], newest_first[PAGE_SIZE:]]
    # $top spans pages: the token carries how many are left.
    pages = _follow(aml, _arm(aml, f"/models/{model}/versions", **{"$orderBy": "createdtime asc", "$top": "3"}))
    assert pages == [["1", "2"], ["3"]]
    models = _follow(aml, _arm(aml, "/models"))
    assert model in [n for p in models for n in p] and all(len(p) <= PAGE_SIZE for p in models)


def test_bad_list_options_are_400_in_arms_shape(emulator, model):
    aml = emulator.azureml
    for params in ({"$orderBy": "name sideways"}, {"$top": "0"}, {"$top": "many"}, {"$skip": "not-a-token"},
                   {"listViewType": "Sometimes"}):
        resp = _arm(aml, f"/models/{model}/versions", **params)
        assert resp.status_code == 400, (params, resp.text)
        assert resp.json()["error"]["code"] == "BadArgument", resp.text
    assert _arm(aml, "/onlineEndpoints", orderBy="sideways").status_code == 400


def test_online_endpoints_list_orders_and_filters(emulator):
    aml = emulator.azureml
    ml = OnlineEndpointsClient.for_workspace(aml)
    for name in ("ep-first", "ep-second"):
        ml.create_endpoint(name)
    newest = _arm(aml, "/onlineEndpoints", orderBy="CreatedAtDesc").json()["value"]
    assert [e["name"] for e in newest][:2] == ["ep-second", "ep-first"]
    assert [e["name"] for e in _arm(aml, "/onlineEndpoints", name="ep-first").json()["value"]] == ["ep-first"]
