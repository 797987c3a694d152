"""Databricks' quota of 1000 metrics per MLflow 3 logged model (issue 30 item 7), with the real
MLflow 3.17.2 client against the Databricks workspace.

mlflow/mlflow#20715: on Databricks, ``log_model`` in a run holding more than 1000 metric points at the
model's step fails with ``BAD_REQUEST: Unable to log new or update existing logged model metrics for
model m-..., exceeded maximum allowed number of logged model metrics per logged model: 1000. To raise
this quota please contact the Databricks support team.``
"""

from __future__ import annotations

import mlflow
import pytest
import requests
from mlflow import MlflowClient
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException, RestException

QUOTA_TEXT = ("Unable to log new or update existing logged model metrics for model {}, exceeded maximum "
              "allowed number of logged model metrics per logged model: 1000. To raise this quota please "
              "contact the Databricks support team.")


class Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input):
        return model_input


def _metrics(n: int, model_id: str | None = None, step: int = 0, prefix: str = "m") -> list[Metric]:
    return [Metric(f"{prefix}{i:04d}", float(i), 1_700_000_000_000 + i, step, model_id=model_id) for i in range(n)]


def test_log_model_in_a_run_with_1001_metrics_fails_as_in_the_report(databricks_ws):
    mlflow.set_experiment(f"/Users/{databricks_ws.user}/logged-model-quota")
    with mlflow.start_run() as run:
        # 1001 points of one metric at step 0 (as the reporter's repeated backfills made them): the
        # run takes them (the client sends batches of 1000 and 1).
        points = [Metric("loss", 1.0 / (i + 1), 1_700_000_000_000 + i, 0) for i in range(1001)]
        MlflowClient().log_batch(run.info.run_id, metrics=points)
        with pytest.raises(MlflowException) as err:
            mlflow.pyfunc.log_model(name="echo", python_model=Echo(), pip_requirements=["mlflow"])
    assert err.value.error_code == "BAD_REQUEST"
    model_id = str(err.value).split("for model ", 1)[1].split(",", 1)[0]
    assert str(err.value) == "BAD_REQUEST: " + QUOTA_TEXT.format(model_id)
    # The first batch of 1000 was linked; the refused one stored nothing.
    assert len(MlflowClient().get_logged_model(model_id).metrics) == 1000
    assert len(MlflowClient().get_metric_history(run.info.run_id, "loss")) == 1001


def test_1000_metrics_are_taken_a_resent_point_does_not_count_the_1001st_is_refused(databricks_ws):
    exp = mlflow.set_experiment(f"/Users/{databricks_ws.user}/logged-model-quota-raw")
    client = MlflowClient()
    model = client.create_logged_model(exp.experiment_id, name="quota")
    run = client.create_run(exp.experiment_id)
    client.log_batch(run.info.run_id, metrics=_metrics(1000, model.model_id))
    client.log_batch(run.info.run_id, metrics=_metrics(3, model.model_id))  # the same points again
    assert len(client.get_logged_model(model.model_id).metrics) == 1000
    with pytest.raises(RestException) as err:
        client.log_metric(run.info.run_id, "extra", 1.0, step=1, model_id=model.model_id)
    assert err.value.error_code == "BAD_REQUEST"
    assert QUOTA_TEXT.format(model.model_id) in str(err.value)
    assert len(client.get_logged_model(model.model_id).metrics) == 1000
    assert "extra" not in client.get_run(run.info.run_id).data.metrics  # nothing of the refused write
    # Raw REST: Databricks' error shape.
    resp = requests.post(f"{databricks_ws.url}/api/2.0/mlflow/runs/log-batch", timeout=60,
                         headers={"Authorization": f"Bearer {databricks_ws.token}"},
                         json={"run_id": run.info.run_id, "metrics": [
                             {"key": "extra", "value": 1.0, "timestamp": 1, "step": 2, "model_id": model.model_id}]})
    assert resp.status_code == 400
    assert resp.json() == {"error_code": "BAD_REQUEST", "message": QUOTA_TEXT.format(model.model_id)}
    # Metrics without a model, and other models, are not affected.
    client.log_metric(run.info.run_id, "plain", 1.0)
    other = client.create_logged_model(exp.experiment_id, name="other")
    client.log_metric(run.info.run_id, "extra", 1.0, model_id=other.model_id)
    assert len(client.get_logged_model(other.model_id).metrics) == 1
