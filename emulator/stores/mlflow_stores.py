"""MLflow store plugins (``mlflow.tracking_store`` / ``mlflow.model_registry_store`` entry points).

The Databricks workspace keeps MLflow's SQL store but lays artifacts out as Databricks does:
experiments under ``dbfs:/databricks/mlflow-tracking/<id>`` and MLflow 3 logged models under
``<experiment>/logged_models/<id>/artifacts`` (the client reads ``models/<id>`` as a run id).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

DATABRICKS_SCHEME = "emulator-databricks"
AZUREML_SCHEME = "emulator-azureml"
_SCHEMES = {"databricks": DATABRICKS_SCHEME, "azureml": AZUREML_SCHEME}


def role_uri(role: str, database_uri: str) -> str:
    """The store URI the server is given: the role's scheme wrapped around the database's, so that
    MLflow's store registry picks the role's store class (entry points in pyproject.toml)."""
    return f"{_SCHEMES[role]}:{database_uri}" if role in _SCHEMES else database_uri


def store_uri(role: str, db_path: Path) -> str:
    return role_uri(role, f"sqlite:///{Path(db_path).resolve()}")


def _database_uri(store_uri: str) -> str:
    """SQLite or PostgreSQL (emulator.stores.postgres): MLflow's SQL store takes either."""
    scheme, _, rest = store_uri.partition(":")
    return rest if scheme in _SCHEMES.values() else store_uri


# MLflow's stores are imported lazily: MLflow loads these entry points while importing them.
@cache
def _tracking_store_class():
    """MLflow's SQL store with cheaper metric inserts (emulator.stores.metric_writes), for both roles."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    from emulator.stores.metric_writes import BulkMetricWrites

    class EmulatorTrackingStore(BulkMetricWrites, SqlAlchemyStore):
        pass

    return EmulatorTrackingStore


@cache
def _databricks_tracking_store_class():
    from mlflow.store.tracking.dbmodels.models import SqlLoggedModel
    from mlflow.utils.uri import append_to_uri_path

    class DatabricksTrackingStore(_tracking_store_class()):
        MODELS_FOLDER_NAME = "logged_models"

        def create_logged_model(self, experiment_id, *args, **kwargs):
            # MLflow's SQL store hard-codes SqlAlchemyStore.MODELS_FOLDER_NAME ("models") here;
            # Databricks lays logged models out as <experiment>/logged_models/<id>/artifacts.
            model = super().create_logged_model(experiment_id, *args, **kwargs)
            location = append_to_uri_path(
                self.get_experiment(experiment_id).artifact_location,
                self.MODELS_FOLDER_NAME, model.model_id, self.ARTIFACTS_FOLDER_NAME,
            )
            with self.ManagedSessionMaker(read_only=False) as session:
                session.query(SqlLoggedModel).filter(SqlLoggedModel.model_id == model.model_id).update(
                    {SqlLoggedModel.artifact_location: location}
                )
            return self.get_logged_model(model.model_id)

    return DatabricksTrackingStore


def databricks_tracking_store(store_uri: str, artifact_uri: str | None = None):
    return _databricks_tracking_store_class()(_database_uri(store_uri), artifact_uri)


def azureml_tracking_store(store_uri: str, artifact_uri: str | None = None):
    return _tracking_store_class()(_database_uri(store_uri), artifact_uri)


def registry_store(store_uri: str):
    """Both roles keep MLflow's own SQL registry store."""
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

    return SqlAlchemyStore(_database_uri(store_uri))
