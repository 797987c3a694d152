"""Link and unlink the two workspaces through the Databricks admin endpoints (local or Docker)."""

from __future__ import annotations

import requests


def _post(databricks, path: str, body: dict | None = None) -> dict:
    from harness.admin_http import session

    answer = session().post(f"{databricks.url}{path}", json=body or {},
                            headers={"Authorization": f"Bearer {databricks.token}"}, timeout=30)
    if answer.status_code >= 400:
        raise RuntimeError(f"POST {path} failed ({answer.status_code}): {answer.text[:300]}")
    return answer.json() if answer.content else {}


def link(databricks, azureml) -> dict:
    """Like the portal's "Link Azure ML workspace" button: Databricks runs get mirrored to Azure ML."""
    return _post(databricks, "/__emulator/link", {"azureml_url": azureml.url, "azureml_token": azureml.token})


def unlink(databricks) -> dict:
    return _post(databricks, "/__emulator/unlink")


def mirror_of(databricks, run_id: str) -> dict | None:
    """{"azureml_run_id", "azureml_experiment_id"} for a mirrored Databricks run, else None."""
    answer = requests.get(f"{databricks.url}/__emulator/mirror/runs/{run_id}",
                          headers={"Authorization": f"Bearer {databricks.token}"}, timeout=30)
    return answer.json() if answer.status_code == 200 else None
