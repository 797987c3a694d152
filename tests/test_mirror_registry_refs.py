"""The registry is not dual: the mirror must not copy Databricks-only registry references.

MLflow tags a logged model with ``mlflow.modelVersions`` when it registers it (fluent
register_model -> set_logged_model_tags). Copied to Azure ML, the tag made the Azure ML UI link a
mirrored run to a registered model version that exists only in Databricks.
"""

from __future__ import annotations

import mlflow
from sklearn.linear_model import LinearRegression

from harness import links

REGISTRY_TAG = "mlflow.modelVersions"


def test_mirrored_logged_model_names_no_databricks_registry_version(linked_workspaces):
    aml = linked_workspaces.azureml_client
    mlflow.set_tracking_uri("databricks")
    mlflow.set_registry_uri("databricks")
    try:
        mlflow.set_experiment(f"/Users/{linked_workspaces.databricks.user}/mirror-registry-refs")
        with mlflow.start_run() as run:
            info = mlflow.sklearn.log_model(LinearRegression().fit([[0.0], [1.0]], [0.0, 1.0]), name="model",
                                            registered_model_name="mirror_registry_refs")
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
    source = linked_workspaces.databricks_client.get_logged_model(info.model_id)
    assert REGISTRY_TAG in source.tags  # the Databricks side keeps it: the version exists there
    linked_workspaces.assert_dual_logged(run.info.run_id)
    mirrored = aml.search_logged_models(
        experiment_ids=[links.mirror_of(linked_workspaces.databricks, run.info.run_id)["azureml_experiment_id"]],
        filter_string=f"tags.`emulator.source_model_id` = '{info.model_id}'")
    assert len(mirrored) == 1
    assert REGISTRY_TAG not in mirrored[0].tags, mirrored[0].tags
    assert aml.search_model_versions("name = 'mirror_registry_refs'") == []
