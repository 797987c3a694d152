"""Check 2 against both workspaces' registries, with models logged by the seed scenario."""

import uuid

import pytest
from mlflow import MlflowClient

from harness import scenarios
from harness.checks import check_registry_increments, verify_registry_versions
from harness.checks.registry import registry_label
from harness.pytest_plugin import assert_versions_increment


def fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def databricks_model(emulated_workspaces):
    """The seed scenario's logged model in the Databricks workspace (source for more versions)."""
    import os

    ws = emulated_workspaces.databricks
    os.environ.update(ws.env)
    return scenarios.run_databricks_scenario(ws.url, ws.token, ws.user, folder="harness-registry",
                                             model_name=fresh("seed"), epochs=2)


@pytest.fixture(scope="module")
def azureml_model(emulated_workspaces):
    import os

    ws = emulated_workspaces.azureml
    os.environ.update(ws.env)
    return scenarios.run_azureml_scenario(ws.subscription_id, ws.resource_group, ws.workspace_name,
                                          model_name=fresh("seed"), epochs=2)


@pytest.fixture
def db_client(databricks_workspace):
    return MlflowClient("databricks", "databricks")


@pytest.fixture
def aml_client(azureml_workspace):
    return MlflowClient(azureml_workspace.tracking_uri, azureml_workspace.tracking_uri)


def test_seed_registration_gives_version_1(databricks_model, db_client, azureml_model, aml_client):
    assert databricks_model.model_version == 1 and azureml_model.model_version == 1
    assert verify_registry_versions(db_client, databricks_model.model_name).passed
    assert verify_registry_versions(aml_client, azureml_model.model_name).passed


@pytest.mark.parametrize("registry", ["databricks", "azureml"])
def test_sequential_registrations_increment_from_1(registry, request):
    model = request.getfixturevalue(f"{registry}_model")
    client = request.getfixturevalue("db_client" if registry == "databricks" else "aml_client")
    name = fresh("seq")
    result = check_registry_increments(client, name, model.registered_source, run_id=model.run_id,
                                       model_id=model.model_id, registrations=3)
    assert result.passed, result.summary()
    assert result.details["returned_versions"] == [1, 2, 3]
    assert result.details["versions"] == [1, 2, 3]
    if registry == "databricks":  # the plugin's helper, with its default client (registry "databricks")
        assert assert_versions_increment(name).details["versions"] == [1, 2, 3]


def test_an_existing_name_continues_its_sequence(databricks_model, db_client):
    result = check_registry_increments(db_client, databricks_model.model_name, databricks_model.registered_source,
                                       run_id=databricks_model.run_id, model_id=databricks_model.model_id,
                                       registrations=2)
    assert result.passed, result.summary()
    assert result.details["returned_versions"][0] == 2


def test_concurrent_threads_get_each_version_once(databricks_model, db_client):
    result = check_registry_increments(db_client, fresh("conc"), databricks_model.registered_source,
                                       run_id=databricks_model.run_id, model_id=databricks_model.model_id,
                                       registrations=6, concurrency=6)
    assert result.passed, result.summary()
    assert sorted(result.details["returned_versions"]) == [1, 2, 3, 4, 5, 6]


def test_concurrent_processes(azureml_model, aml_client):
    result = check_registry_increments(aml_client, fresh("proc"), azureml_model.registered_source,
                                       run_id=azureml_model.run_id, model_id=azureml_model.model_id,
                                       registrations=3, concurrency=3, processes=True)
    assert result.passed, result.summary()
    assert "processes" in result.subject


def test_a_retried_create_is_reported_as_a_duplicate_version(databricks_model, db_client):
    name = fresh("dup")
    db_client.create_registered_model(name)
    src, run_id = databricks_model.registered_source, databricks_model.run_id
    db_client.create_model_version(name, src, run_id=run_id, description="registration 1")
    db_client.create_model_version(name, src, run_id=run_id, description="registration 2")
    # The same model-versions/create again, as a client retrying after a timeout sends it.
    db_client.create_model_version(name, src, run_id=run_id, description="registration 2")
    result = verify_registry_versions(db_client, name, expected_count=2)
    texts = [str(d) for d in result.differences]
    assert texts[0].startswith("version 3: duplicate of version 2 (same source, run and description 'registration 2'")
    assert texts[1] == f"model {name}: registry holds 3 versions for 2 registrations"
    with pytest.raises(pytest.fail.Exception, match="version 3: duplicate of version 2"):
        assert_versions_increment(name, client=db_client)


def test_a_retried_log_model_registration_is_reported_as_a_duplicate(azureml_workspace):
    """The normal path: log_model(registered_model_name=...) sets no description; its create's answer
    is lost after the commit, the client retries, and the registry holds two versions of one model."""
    import mlflow
    from sklearn.linear_model import LinearRegression

    from harness.faults import inject_fault

    aml = azureml_workspace
    client = MlflowClient(aml.tracking_uri, aml.tracking_uri)
    name = fresh("retried")
    previous_registry = mlflow.get_registry_uri()
    mlflow.set_tracking_uri(aml.tracking_uri)
    mlflow.set_registry_uri(aml.tracking_uri)
    try:
        mlflow.set_experiment(fresh("retried"))
        with mlflow.start_run():
            mlflow.sklearn.log_model(LinearRegression().fit([[0.0], [1.0]], [0.0, 1.0]), name="model",
                                     registered_model_name=name)  # version 1, nothing lost
        with mlflow.start_run():
            with inject_fault(aml, "POST", "/api/2.0/mlflow/model-versions/create", after_commit="drop", times=1):
                info = mlflow.sklearn.log_model(LinearRegression().fit([[0.0], [1.0]], [1.0, 0.0]), name="model",
                                                registered_model_name=name)
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(previous_registry)
    assert str(info.registered_model_version) == "3"
    result = verify_registry_versions(client, name, expected_count=2)
    texts = [str(d) for d in result.differences]
    assert texts[0].startswith("version 3: duplicate of version 2 (same source, run and logged model, no description, "
                               "created "), texts
    assert texts[1] == f"model {name}: registry holds 3 versions for 2 registrations"
    assert len(texts) == 2, texts  # version 2 (another logged model) is not a duplicate of version 1


def test_a_gap_is_reported_as_a_skipped_version(azureml_model, aml_client):
    name = fresh("gap")
    result = check_registry_increments(aml_client, name, azureml_model.registered_source,
                                       run_id=azureml_model.run_id, model_id=azureml_model.model_id,
                                       registrations=3)
    assert result.passed, result.summary()
    aml_client.delete_model_version(name, "2")
    result = verify_registry_versions(aml_client, name)
    assert [str(d) for d in result.differences] == [
        "version 2: skipped (registry has versions up to 3 without it)"]


def test_concurrent_failures_are_named_per_registration(databricks_model, db_client):
    result = check_registry_increments(db_client, fresh("fail"), "models:/m-does-not-exist",
                                       model_id="m-does-not-exist", registrations=3, concurrency=3)
    texts = [str(d) for d in result.differences]
    assert sorted(t.split(":")[0] for t in texts if "failed" in t) == [
        "registration #1", "registration #2", "registration #3"]
    assert f"model {result.subject.split(chr(39))[1]}: registry holds 0 versions for 3 registrations" in texts


@pytest.mark.parametrize("registry", ["databricks", "azureml"])
def test_a_missing_model_fails_naming_it(registry, request):
    """A typo in the name must not give a green build: nothing to verify is a failure."""
    client = request.getfixturevalue("db_client" if registry == "databricks" else "aml_client")
    name = fresh("no-such-model")
    result = verify_registry_versions(client, name)
    assert not result.passed
    assert [str(d) for d in result.differences] == [
        f"model {name}: does not exist in the {registry_label(client)}"]
    with pytest.raises(pytest.fail.Exception, match=f"model {name}: does not exist"):
        assert_versions_increment(name, client=client)
    client.create_registered_model(name)  # exists, but no version to check either
    with pytest.raises(pytest.fail.Exception, match=f"model {name}: has no versions"):
        assert_versions_increment(name, client=client)
