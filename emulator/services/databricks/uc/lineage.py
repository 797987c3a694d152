"""What a UC model version may name as its lineage: logged models and runs this workspace holds.

The UC client sends ``model_id`` (MLflow 3) and ``run_id`` with ``run_tracking_server_id`` (the
workspace id it read from ``runs/get``). A ``model_id`` the workspace does not hold is refused (MLflow
3.0-3.4 clients sent the id of a model logged to a local tracking server; Unity Catalog refused it,
mlflow/mlflow#18194). A ``run_id`` from another tracking server (no ``run_tracking_server_id``) is
accepted: Unity Catalog records runs of other servers (MLflow 2.x did this from local servers, and
the 3.5+ client fix for #18194 relies on it); one that claims this workspace but is not here is not.
"""

from __future__ import annotations

from emulator.errors import EmulatorError


def _held(lookup, object_id: str) -> bool:
    from mlflow.exceptions import MlflowException
    from mlflow.server.handlers import _get_tracking_store

    try:
        getattr(_get_tracking_store(), lookup)(object_id)
    except MlflowException:
        return False
    return True


def check(model_id: str | None, run_id: str | None, run_tracking_server_id: str | None, workspace_id: str) -> None:
    # fidelity: Unity Catalog model registry
    if model_id and not _held("get_logged_model", model_id):
        raise EmulatorError("RESOURCE_DOES_NOT_EXIST", f"Logged model with ID '{model_id}' does not exist in "
                            "this workspace: a model version can only name a logged model of its workspace's "
                            "MLflow tracking server.", 404)
    if run_id and run_tracking_server_id == workspace_id and not _held("get_run", run_id):
        raise EmulatorError("RESOURCE_DOES_NOT_EXIST", f"Run '{run_id}' does not exist in workspace "
                            f"{workspace_id}.", 404)
