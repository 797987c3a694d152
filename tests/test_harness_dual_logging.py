"""Check 1 against two real workspaces: a run in Databricks, hand-made mirrors in Azure ML."""

import pytest
from mlflow import MlflowClient

from harness.checks import check_dual_logging
from harness.pytest_plugin import assert_dual_logged
from tests.harness_data import copy_run, databricks_experiment, source_run


@pytest.fixture
def clients(databricks_workspace, azureml_workspace):
    return (MlflowClient("databricks", "databricks"),
            MlflowClient(azureml_workspace.tracking_uri, azureml_workspace.tracking_uri))


@pytest.fixture
def source(clients, databricks_workspace, request):
    db, _ = clients
    exp_id = databricks_experiment(db, databricks_workspace.user, request.node.name)
    run_id = source_run(db, exp_id)
    return run_id, db.get_experiment(exp_id).name


def texts(result):
    return [str(d) for d in result.differences]


def test_faithful_mirror_passes_and_counts_what_it_compared(clients, source):
    db, aml = clients
    run_id, exp_name = source
    mirror_id = copy_run(db, run_id, aml, exp_name)
    result = check_dual_logging(db, aml, run_id=run_id)
    assert result.passed, result.summary()
    assert result.details["azureml_run_id"] == mirror_id
    assert result.compared["params"] == 2
    assert result.compared["metric_points"] == 5
    assert result.compared["artifacts"] == 2
    # The link marker differs by design and is listed as ignored, not as a difference.
    assert "emulator.source_run_id" in result.compared["tags_ignored"]
    # Also found as "the last run of the experiment", as the seed's last_run_id.
    assert check_dual_logging(db, aml, experiment_name=exp_name).details["azureml_run_id"] == mirror_id


def test_missing_metric_point_is_named_by_key_and_step(clients, source):
    db, aml = clients
    run_id, exp_name = source
    mirror_id = copy_run(db, run_id, aml, exp_name, drop_metric_step=("epoch_loss", 3))
    result = check_dual_logging(db, aml, run_id=run_id, mirror_run_id=mirror_id)
    assert not result.passed
    assert texts(result) == ["metric epoch_loss step 3: missing in azureml (value 0.25)"]


def test_changed_artifact_is_named_with_its_checksum(clients, source):
    db, aml = clients
    run_id, exp_name = source
    mirror_id = copy_run(db, run_id, aml, exp_name, change_artifact="notes.txt")
    result = check_dual_logging(db, aml, run_id=run_id, mirror_run_id=mirror_id)
    assert len(result.differences) == 1, result.summary()
    assert str(result.differences[0]).startswith("artifact notes.txt: sha256 differs (")


def test_changed_param_and_missing_mirror(clients, source):
    db, aml = clients
    run_id, exp_name = source
    # No mirror at all: the experiment is missing in Azure ML.
    result = check_dual_logging(db, aml, run_id=run_id)
    assert texts(result) == [f"run {run_id}: experiment {exp_name!r} is missing in azureml"]
    mirror_id = copy_run(db, run_id, aml, exp_name, change_param=("lr", "0.1"))
    result = check_dual_logging(db, aml, run_id=run_id, mirror_run_id=mirror_id)
    assert texts(result) == ["param lr: value differs ('0.01' in databricks, '0.1' in azureml)"]
    # A second Databricks run in the same experiment has no run tagged with its id.
    other = source_run(db, db.get_experiment_by_name(exp_name).experiment_id)
    result = check_dual_logging(db, aml, run_id=other)
    assert "no run in azureml experiment" in texts(result)[0] and other in texts(result)[0]


def test_assert_dual_logged_fails_with_a_readable_message(clients, source):
    db, aml = clients
    run_id, exp_name = source
    copy_run(db, run_id, aml, exp_name, drop_metric_step=("epoch_loss", 0))
    with pytest.raises(pytest.fail.Exception) as info:
        assert_dual_logged(run_id, databricks=db, azureml=aml, timeout=0)
    message = str(info.value)
    assert "dual_logging: FAILED" in message
    assert "metric epoch_loss step 0: missing in azureml" in message


def test_linked_workspaces_fixture_mirrors_notebook_code(linked_workspaces, tmp_path):
    """Last in this module: while linked, new runs are mirrored for real (then unlinked again)."""
    import mlflow
    import mlflow.sklearn
    from databricks.sdk import WorkspaceClient
    from sklearn.linear_model import LinearRegression

    from harness import scenarios

    user = linked_workspaces.databricks.user
    WorkspaceClient().workspace.mkdirs(f"/Users/{user}/harness-linked")
    mlflow.set_tracking_uri("databricks")
    mlflow.set_experiment(f"/Users/{user}/harness-linked/notebook")
    with mlflow.start_run() as run:
        mlflow.log_param("alpha", "0.5")
        for step in range(4):
            mlflow.log_metric("epoch_loss", 1.0 / (step + 1), step=step)
        mlflow.log_text("hello\n", "notes.txt")
        X, y = scenarios.training_data(50)
        mlflow.sklearn.log_model(LinearRegression().fit(X, y), name="model")
    result = linked_workspaces.assert_dual_logged(run.info.run_id)
    assert result.compared["metric_points"] == 4 and result.compared["artifacts"] == 1
    assert result.compared["logged_models"] == 1 and result.compared["logged_model_files"] >= 3
    assert_dual_logged(run.info.run_id, timeout=0)  # the plugin's helper finds the session's workspaces

    # Break the mirrored logged model: one of its files changes in Azure ML.
    aml = linked_workspaces.azureml_client
    mirrored = aml.search_logged_models([result.details["azureml_experiment_id"]],
                                        filter_string=f"source_run_id = '{result.details['azureml_run_id']}'")[0]
    changed = tmp_path / "requirements.txt"
    changed.write_text("scikit-learn==0.1\n")
    aml.log_model_artifact(mirrored.model_id, str(changed))
    result = check_dual_logging(linked_workspaces.databricks_client, aml, run_id=run.info.run_id)
    assert [str(d).split(" (")[0] for d in result.differences] == [
        "logged model model file requirements.txt: sha256 differs"]
