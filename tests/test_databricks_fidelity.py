"""Databricks fidelity: mlflow.rootRunId on nested runs, the clusters API tools probe."""

import mlflow
import pytest
import requests
from mlflow import MlflowClient
from mlflow.entities import RunTag

pytestmark = pytest.mark.shared_emulator  # the session's pair, reset (tests/conftest.py)

ROOT = "mlflow.rootRunId"
PARENT = "mlflow.parentRunId"


def descendants(experiment_id, root_id):
    runs = MlflowClient().search_runs([experiment_id], filter_string=f"tags.`{ROOT}` = '{root_id}'")
    return {r.info.run_id for r in runs}


def tag(run_id, key=ROOT):
    return MlflowClient().get_run(run_id).data.tags.get(key)


def test_nested_runs_carry_the_root_run_id(databricks_ws):
    exp = mlflow.set_experiment(f"/Users/{databricks_ws.user}/lineage")
    with mlflow.start_run() as parent:
        with mlflow.start_run(nested=True) as child:
            with mlflow.start_run(nested=True) as grandchild:
                pass
    ids = {parent.info.run_id, child.info.run_id, grandchild.info.run_id}
    # As mlflow-export-import finds a tree on Databricks: the search includes the root run itself.
    assert descendants(exp.experiment_id, parent.info.run_id) == ids
    assert tag(parent.info.run_id) == parent.info.run_id
    assert tag(grandchild.info.run_id, PARENT) == child.info.run_id
    # The runs/create answer carries it too (the client's Run object).
    assert parent.data.tags[ROOT] == parent.info.run_id
    assert child.data.tags[ROOT] == parent.info.run_id
    # A plain run of another client (raw REST) is its own root.
    headers = {"Authorization": f"Bearer {databricks_ws.token}"}
    created = requests.post(f"{databricks_ws.url}/api/2.0/mlflow/runs/create", headers=headers, timeout=30,
                            json={"experiment_id": exp.experiment_id}).json()["run"]
    assert {"key": ROOT, "value": created["info"]["run_id"]} in created["data"]["tags"]


def test_a_parent_set_later_moves_the_whole_subtree(databricks_ws):
    exp = mlflow.set_experiment(f"/Users/{databricks_ws.user}/lineage-later")
    client = MlflowClient()
    top = client.create_run(exp.experiment_id)
    middle = client.create_run(exp.experiment_id)
    leaf = client.create_run(exp.experiment_id, tags={PARENT: middle.info.run_id})
    assert tag(leaf.info.run_id) == middle.info.run_id
    client.set_tag(middle.info.run_id, PARENT, top.info.run_id)  # runs/set-tag
    everyone = {top.info.run_id, middle.info.run_id, leaf.info.run_id}
    assert descendants(exp.experiment_id, top.info.run_id) == everyone
    assert descendants(exp.experiment_id, middle.info.run_id) == set()
    # Unparented again (runs/delete-tag): the subtree is its own tree once more.
    client.delete_tag(middle.info.run_id, PARENT)
    assert descendants(exp.experiment_id, middle.info.run_id) == {middle.info.run_id, leaf.info.run_id}
    assert descendants(exp.experiment_id, top.info.run_id) == {top.info.run_id}
    # runs/log-batch, with a deleted run in the subtree: it follows as well.
    client.delete_run(leaf.info.run_id)
    client.log_batch(middle.info.run_id, tags=[RunTag(PARENT, top.info.run_id)])
    assert tag(middle.info.run_id) == top.info.run_id
    assert tag(leaf.info.run_id) == top.info.run_id


def test_a_parent_cycle_does_not_hang(databricks_ws):
    exp = mlflow.set_experiment(f"/Users/{databricks_ws.user}/lineage-cycle")
    client = MlflowClient()
    a = client.create_run(exp.experiment_id)
    b = client.create_run(exp.experiment_id, tags={PARENT: a.info.run_id})
    client.set_tag(a.info.run_id, PARENT, b.info.run_id)  # nonsense, but must answer
    assert tag(a.info.run_id) in {a.info.run_id, b.info.run_id}
    # A parent this workspace does not hold: the id given is the top of the tree as far as it is known.
    orphan = client.create_run(exp.experiment_id, tags={PARENT: "0" * 32})
    assert tag(orphan.info.run_id) == "0" * 32


def test_clusters_api_answers_like_a_workspace(databricks_ws, sdk):
    from databricks.sdk.errors import ResourceDoesNotExist
    from databricks.sdk.service.compute import State

    # What tools call to tell Databricks from plain MLflow.
    node_types = sdk.clusters.list_node_types().node_types
    ids = {n.node_type_id for n in node_types}
    assert {"Standard_DS3_v2", "Standard_DS4_v2", "Standard_E8ds_v4", "Standard_NC6s_v3"} <= ids
    ds3 = next(n for n in node_types if n.node_type_id == "Standard_DS3_v2")
    assert (ds3.num_cores, ds3.memory_mb, ds3.category) == (4.0, 14336, "General Purpose")
    assert ds3.node_instance_type.local_disks == 1
    # The SDK's own selection logic works over the list (sorts by cores, memory, disks, ...).
    assert sdk.clusters.select_node_type(local_disk=True) == "Standard_F4s"
    assert sdk.clusters.select_node_type(min_memory_gb=16) == "Standard_D4s_v5"
    assert sdk.clusters.select_node_type(min_memory_gb=16, local_disk=True) == "Standard_NC6s_v3"  # 6 cores
    assert sdk.clusters.select_node_type(min_memory_gb=16, local_disk=True, min_gpus=0) == "Standard_DS4_v2"
    assert sdk.clusters.select_node_type(min_gpus=1) == "Standard_NC6s_v3"
    assert sdk.clusters.select_node_type(category="Memory Optimized") == "Standard_E8ds_v4"
    assert sdk.clusters.select_node_type(local_disk_min_size=1000) == "Standard_L8s_v2"

    (cluster,) = list(sdk.clusters.list())
    assert cluster.state == State.RUNNING and cluster.cluster_name == "notebook"
    assert cluster.node_type_id in ids and cluster.single_user_name == databricks_ws.user
    got = sdk.clusters.get(cluster.cluster_id)
    assert got.as_dict() == cluster.as_dict()
    from databricks.sdk.service.compute import ListClustersFilterBy

    assert list(sdk.clusters.list(filter_by=ListClustersFilterBy(cluster_states=[State.TERMINATED]))) == []
    assert list(sdk.clusters.list(filter_by=ListClustersFilterBy(cluster_states=[State.RUNNING]))) == [cluster]
    # The real 400 INVALID_PARAMETER_VALUE "Cluster <id> does not exist", which the SDK's generated
    # error overrides (errors/overrides.py) turn into ResourceDoesNotExist.
    with pytest.raises(ResourceDoesNotExist, match="Cluster 0000-000000-missing0 does not exist"):
        sdk.clusters.get("0000-000000-missing0")

    # The legacy 2.0 paths answer too; the rest of the Clusters API stays "not implemented" (not a 5xx
    # that clients retry), and every route needs the token.
    headers = {"Authorization": f"Bearer {databricks_ws.token}"}
    legacy = requests.get(f"{databricks_ws.url}/api/2.0/clusters/list-node-types", headers=headers, timeout=30)
    assert legacy.status_code == 200 and legacy.json()["node_types"]
    create = requests.post(f"{databricks_ws.url}/api/2.1/clusters/create", headers=headers, json={}, timeout=30)
    assert create.status_code == 501 and create.json()["error_code"] == "NOT_IMPLEMENTED"
    anonymous = requests.get(f"{databricks_ws.url}/api/2.1/clusters/list", timeout=30)
    assert anonymous.status_code == 401
