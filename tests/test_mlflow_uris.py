"""harness.mlflow_uris puts MLflow's URIs back exactly: globals and the exported variables."""
import os

import mlflow

from harness import mlflow_uris


def test_using_leaves_no_exported_registry_uri_behind(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    local = tmp_path.as_uri()
    mlflow.set_tracking_uri(local)
    os.environ.pop("MLFLOW_TRACKING_URI")  # as if set in-process only
    with mlflow_uris.using("databricks", "databricks"):
        assert os.environ["MLFLOW_REGISTRY_URI"] == "databricks"
        assert mlflow.get_registry_uri() == "databricks"
    # set_registry_uri(None) alone would have left MLFLOW_REGISTRY_URI=databricks for every subprocess.
    assert "MLFLOW_REGISTRY_URI" not in os.environ
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert mlflow.get_tracking_uri() == local
    assert mlflow.get_registry_uri() == local  # derived again from tracking, not pinned


def test_restore_keeps_a_users_own_variables(monkeypatch):
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", "databricks-uc")
    saved = mlflow_uris.snapshot()
    mlflow.set_registry_uri("http://127.0.0.1:1")
    mlflow_uris.restore(saved)
    assert os.environ["MLFLOW_REGISTRY_URI"] == "databricks-uc"
    assert mlflow.get_registry_uri() == "databricks-uc"


def test_the_active_experiment_goes_back_with_the_uris(monkeypatch, tmp_path):
    """set_experiment's id belongs to one tracking server: left behind, the next test's runs went to
    an id the next server does not hold ("No Experiment with id=7 exists")."""
    from mlflow.tracking import fluent

    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    saved = mlflow_uris.snapshot()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment_id = mlflow.set_experiment("leaks").experiment_id
    assert fluent._active_experiment_id == experiment_id == os.environ["MLFLOW_EXPERIMENT_ID"]
    mlflow_uris.restore(saved)
    assert fluent._active_experiment_id is None and "MLFLOW_EXPERIMENT_ID" not in os.environ
