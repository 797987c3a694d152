"""The `shared_emulator` marker (tests/conftest.py): the module's `emulator` is the session's pair,
unlinked and emptied before the module, as a module-scoped emulator of its own would be (issue 33:
an `emulator up` per module cost the suite minutes)."""

import pytest
import requests
from mlflow import MlflowClient

from emulator.control.live_reset import holds_data
from harness import links
from tests.conftest import _session_pair_is_ours

pytestmark = pytest.mark.shared_emulator


@pytest.fixture(scope="module", autouse=True)
def left_behind(request, emulated_workspaces):
    """What an earlier module may leave in the session's pair: a run and a model, and the link.
    (Autouse: set up before the module's `emulator`, which must clear it.)"""
    if not _session_pair_is_ours(request.config):
        pytest.skip("the session's pair is Compose's, a user's state dir or linked: modules start their own")
    db, aml = emulated_workspaces.databricks, emulated_workspaces.azureml
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DATABRICKS_HOST", db.url)
        mp.setenv("DATABRICKS_TOKEN", db.token)
        client = MlflowClient("databricks", "databricks")
        client.create_run(client.create_experiment(f"/Users/{db.user}/left-behind"))
        client.create_registered_model("left-behind")
    links.link(db, aml)
    assert holds_data(db.url, db.token)


def test_the_module_gets_the_session_pair_emptied_and_unlinked(emulator, emulated_workspaces):
    assert emulator is emulated_workspaces  # no second pair started
    for ws in (emulator.databricks, emulator.azureml):
        assert not holds_data(ws.url, ws.token), ws.url
    mirror = requests.get(f"{emulator.databricks.url}/__emulator/mirror", timeout=60,
                          headers={"Authorization": f"Bearer {emulator.databricks.token}"})
    assert mirror.status_code == 200 and mirror.json()["linked"] is False, mirror.text
