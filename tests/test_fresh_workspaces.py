"""What the plugin's ``fresh_workspaces`` promises each test (docs/pages/harness.md), kept while
its per-test cost was cut (issue 33): both workspaces empty, fault rules gone, Unity Catalog back
to main.default, the link state as the session configured it."""

from __future__ import annotations

pytest_plugins = ["pytester"]

DIRTY_THEN_FRESH = '''
import requests
from databricks.sdk import WorkspaceClient
from mlflow import MlflowClient


def _uc(ws, method, path, **kwargs):
    answer = requests.request(method, ws.url + "/api/2.1/unity-catalog" + path, timeout=60,
                              headers={"Authorization": "Bearer " + ws.token}, **kwargs)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_1_leaves_everything_behind(fresh_workspaces):
    db, aml = fresh_workspaces.databricks, fresh_workspaces.azureml
    for client, name in ((MlflowClient("databricks", "databricks"), "/Users/" + db.user + "/left"),
                         (MlflowClient(aml.tracking_uri, aml.tracking_uri), "left")):
        run = client.create_run(client.create_experiment(name))
        client.log_text(run.info.run_id, "x", "notes/a.txt")
        client.create_registered_model("left_model")
    WorkspaceClient(host=db.url, token=db.token).workspace.mkdirs("/Users/" + db.user + "/left-folder")
    # Unity Catalog: a model, and `main` dropped and made again with another comment (the same
    # number of catalogs as a new workspace, not the same catalog).
    MlflowClient("databricks", "databricks-uc").create_registered_model("main.default.m")
    _uc(db, "DELETE", "/catalogs/main", params={"force": "true"})
    _uc(db, "POST", "/catalogs", json={"name": "main", "comment": "mine"})
    for ws in (db, aml):
        ws.add_fault("GET", "/nothing/*", status=503)  # not through inject_fault: nothing removes it but the plugin


def test_2_finds_both_workspaces_new(fresh_workspaces):
    db, aml = fresh_workspaces.databricks, fresh_workspaces.azureml
    for client in (MlflowClient("databricks", "databricks"), MlflowClient(aml.tracking_uri, aml.tracking_uri)):
        experiments = client.search_experiments()
        assert [e.name for e in experiments] == ["Default"]
        assert client.search_runs([e.experiment_id for e in experiments]) == []
        assert client.search_registered_models() == []
    listed = WorkspaceClient(host=db.url, token=db.token).workspace.list("/Users/" + db.user)
    assert [o.path for o in listed] == []
    catalogs = _uc(db, "GET", "/catalogs")["catalogs"]
    assert [(c["name"], c.get("comment")) for c in catalogs] == [("main", "Main catalog (auto-created)")]
    assert [s["full_name"] for s in _uc(db, "GET", "/schemas", params={"catalog_name": "main"})["schemas"]] == ["main.default"]
    assert MlflowClient("databricks", "databricks-uc").search_registered_models() == []
    assert db.faults() == [] and aml.faults() == []
'''

LINKED = '''
import time

import requests
from mlflow import MlflowClient

from harness import links


def _mirror_state(db):
    return requests.get(db.url + "/__emulator/mirror", headers={"Authorization": "Bearer " + db.token},
                        timeout=60).json()


def _mirrored(db, run_id, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = links.mirror_of(db, run_id)
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError("not mirrored in time: " + run_id)


def test_1_mirrors_a_run(fresh_workspaces):
    db = fresh_workspaces.databricks
    client = MlflowClient("databricks", "databricks")
    _mirrored(db, client.create_run(client.create_experiment("/Users/" + db.user + "/one")).info.run_id)


def test_2_still_linked_and_empty(fresh_workspaces):
    db, aml = fresh_workspaces.databricks, fresh_workspaces.azureml
    state = _mirror_state(db)
    assert state["linked"] and state["backlog"] == 0, state
    aml_client = MlflowClient(aml.tracking_uri, aml.tracking_uri)
    assert [e.name for e in aml_client.search_experiments()] == ["Default"]  # the mirrored run went too
    client = MlflowClient("databricks", "databricks")
    run_id = client.create_run(client.create_experiment("/Users/" + db.user + "/two")).info.run_id
    aml_client.get_run(_mirrored(db, run_id)["azureml_run_id"])
'''


def test_each_test_gets_both_workspaces_new(pytester):
    pytester.makepyfile(DIRTY_THEN_FRESH)
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=2)


def test_a_linked_session_stays_linked_across_resets(pytester):
    pytester.makepyfile(LINKED)
    pytester.runpytest_subprocess("--emulator-linked", "-p", "no:cacheprovider").assert_outcomes(passed=2)


def test_workspace_handles_come_from_the_state_dir_alone(emulator):
    """The handles every test's fixtures take (no health probe each time) are the ones `emulator
    status` reports."""
    from emulator.control import status

    full = status.collect(emulator.state)
    db, aml = emulator.databricks, emulator.azureml
    assert (db.url, db.token, db.user, db.s3_url) == (
        full["databricks"]["url"], full["databricks"]["token"], full["databricks"]["user"],
        full["databricks"]["client_env"]["MLFLOW_S3_ENDPOINT_URL"])
    assert (aml.url, aml.token, aml.subscription_id, aml.resource_group, aml.workspace_name, aml.tracking_uri) == tuple(
        full["azureml"][k] for k in ("url", "token", "subscription_id", "resource_group", "workspace_name",
                                     "tracking_uri"))
