"""Check 4: online scoring. A registered Azure ML model version deployed to a managed online
endpoint answers what ``pyfunc.predict`` (and ``spark_udf``) answer for the same rows.

Deploys ``azureml:<name>:<version>`` (ARM id) to a new endpoint, scores ``data`` through the
endpoint's scoring URI as the seed's "request-response web service" is called
(``{"input_data": {"columns", "index", "data"}}``, in batches), and compares row by row with
``pyfunc.load_model(reference or models:/<name>/<version>).predict`` and, given a Spark session,
with ``spark_udf``. Differences look like ``row 17 (a=0.1, b=2.0): endpoint 3.2 vs predict 3.1``.

Pitfalls explained before scoring, as the UDF check does: a payload labelled positionally
(``positional=True``: the values in ``columns`` order, labelled with the signature's names) in
another order than the signature feeds values to the wrong features with no error; columns the
signature needs but that are not sent are a 400 from the endpoint.
"""

from __future__ import annotations

import json
import time
import uuid

import mlflow
import numpy as np
import pandas as pd

from harness import mlflow_uris
from harness.checks.result import CheckResult
from harness.checks.udf_failures import short_error
from harness.checks.udf_scoring import ROW_ID, _signature_columns

BATCH_ROWS = 500


def _payload(frame: pd.DataFrame, labels: list[str]) -> dict:
    split = json.loads(frame.to_json(orient="split"))
    split["columns"] = labels
    return {"input_data": split}


def _scores(answer) -> np.ndarray:
    body = answer.json()
    values = body["predictions"] if isinstance(body, dict) and "predictions" in body else body
    return np.asarray(values, dtype="float64").reshape(len(values), -1)[:, 0]


def check_endpoint_scoring(
    endpoints,
    model_name: str,
    version: str | int,
    data: pd.DataFrame,
    columns: list[str] | None = None,
    reference_model_uri: str | None = None,
    spark=None,
    positional: bool = False,
    atol: float = 1e-6,
    rtol: float = 1e-6,
    endpoint_name: str | None = None,
    deployment_name: str = "harness",
    keep_endpoint: bool = False,
    max_reported: int = 10,
) -> CheckResult:
    """`endpoints` is a harness.online_endpoints.OnlineEndpointsClient for the Azure ML workspace;
    the MLflow tracking/registry URI in effect must be that workspace's (for the reference load)."""
    model_uri = f"models:/{model_name}/{version}"
    ref_uri = reference_model_uri or model_uri
    endpoint = endpoint_name or f"harness-{uuid.uuid4().hex[:8]}"
    result = CheckResult("endpoint_scoring",
                         subject=f"online endpoint {endpoint} serving {model_name}:{version} vs pyfunc predict({ref_uri})")
    started = time.perf_counter()
    created = False
    try:
        t = time.perf_counter()
        model = mlflow.pyfunc.load_model(ref_uri)
        result.timings["load_model"] = time.perf_counter() - t
        signature = _signature_columns(model)
        columns = list(columns or signature or data.columns)
        labels = list(signature) if positional and signature else columns
        _explain(result, signature, columns, positional)
        rows = len(data)
        result.compared.update(rows=rows, columns=columns)
        expected = np.asarray(model.predict(data[columns].copy()), dtype="float64").reshape(rows, -1)[:, 0]

        t = time.perf_counter()
        endpoints.create_endpoint(endpoint, auth_mode="Key")
        created = True
        dep = endpoints.create_deployment(endpoint, deployment_name, endpoints.model_id(model_name, version))
        endpoints.set_traffic(endpoint, {deployment_name: 100})
        result.timings["deploy"] = time.perf_counter() - t
        result.details["provisioning_state"] = dep["properties"]["provisioningState"]

        key = endpoints.keys(endpoint)["primaryKey"]
        t = time.perf_counter()
        got = np.full(rows, np.nan)
        for start in range(0, rows, BATCH_ROWS):
            chunk = data[columns].iloc[start:start + BATCH_ROWS]
            answer = endpoints.score(endpoint, _payload(chunk, labels), credential=key)
            if answer.status_code != 200:
                result.differ(f"rows {start}-{start + len(chunk) - 1}",
                              f"the endpoint answered {answer.status_code}: {answer.text[:300]}")
                continue
            got[start:start + len(chunk)] = _scores(answer)
        score_s = time.perf_counter() - t
        result.timings["endpoint_score"] = score_s
        result.details.update(rows=rows, endpoint_rows_per_s=rows / score_s if score_s else None,
                              requests=(rows + BATCH_ROWS - 1) // BATCH_ROWS)
        _compare(result, "predict", data, columns, got, expected, atol, rtol, max_reported)

        if spark is not None:
            from pyspark.sql import functions as F

            t = time.perf_counter()
            udf = mlflow.pyfunc.spark_udf(spark, ref_uri, env_manager="local", result_type="double")
            sdf = spark.createDataFrame(data[columns].assign(**{ROW_ID: np.arange(rows)}))
            scored = sdf.withColumn("prediction", udf(F.struct(*columns))).select(ROW_ID, "prediction").toPandas()
            result.timings["spark_udf"] = time.perf_counter() - t
            spark_pred = np.full(rows, np.nan)
            spark_pred[scored[ROW_ID].to_numpy()] = scored["prediction"].to_numpy(dtype="float64")
            _compare(result, "spark_udf", data, columns, got, spark_pred, atol, rtol, max_reported)
        else:
            result.details["skipped"] = ["spark_udf: no Spark session"]
            result.notes.append("spark_udf comparison skipped: no Spark session (endpoint vs predict only)")
        result.notes.append(f"{rows} rows through the endpoint in {result.details['requests']} requests: "
                            f"{rows / max(score_s, 1e-9):,.0f} rows/s; deployment ready in "
                            f"{result.timings['deploy']:.1f} s")
    except Exception as exc:
        result.error = short_error(exc)
    finally:
        if created and not keep_endpoint:
            try:
                endpoints.delete_endpoint(endpoint)
            except Exception as exc:  # the verdict stands; say what was left behind
                result.notes.append(f"endpoint {endpoint} was not deleted: {exc}")
        result.timings["total"] = time.perf_counter() - started
    return result


def _explain(result: CheckResult, signature, columns, positional) -> None:
    if signature is None:
        result.notes.append("the model has no signature: the endpoint cannot check the columns it is sent")
        return
    missing = [c for c in signature if c not in columns]
    for col in missing:
        result.differ(f"input column {col}", "required by the model signature, not sent to the endpoint")
    if positional and not missing and [c for c in columns if c in signature] != list(signature):
        result.differ("payload columns",
                      f"values sent in the order {columns} but labelled with the signature's {list(signature)}: "
                      "the endpoint feeds them to the wrong features without an error (label each column "
                      "with its own name)", list(signature), columns)


def _compare(result, against, data, columns, got, expected, atol, rtol, max_reported) -> None:
    rows = len(expected)
    close = np.isclose(got, expected, atol=atol, rtol=rtol, equal_nan=False)
    bad = np.flatnonzero(~close)
    diff = np.abs(got - expected)
    result.details[f"mismatches_vs_{against}"] = int(len(bad))
    result.details[f"max_abs_diff_vs_{against}"] = float(np.nanmax(diff)) if rows and not np.all(np.isnan(diff)) else None
    if len(bad):
        result.differ("predictions", f"{len(bad)} of {rows} rows differ between the endpoint and {against} "
                      f"(atol={atol}, rtol={rtol})", 0, int(len(bad)))
    for i in bad[:max_reported]:
        inputs = ", ".join(f"{c}={data[c].iloc[i]!r}" for c in columns[:4])
        result.differ(f"row {i} ({inputs})", f"endpoint {got[i]!r} vs {against} {expected[i]!r} (|diff| {diff[i]:.3g})",
                      float(expected[i]), float(got[i]))


def run_for_harness(info: dict, seed, aml_seed, spark, rows: int, stamp: str) -> CheckResult:
    """`harness check`'s step: deploy the seed model to an online endpoint and compare.

    Linked: the seed's Databricks-tracked model is registered in Azure ML through the mirror
    (``harness-endpoint-<stamp>`` v1), as issue 13 describes; unlinked: the AML-only seed flow's
    registered model is deployed instead (noted). Nothing to deploy: reported as not run."""
    from mlflow import MlflowClient

    from harness import scenarios
    from harness.online_endpoints import OnlineEndpointsClient

    aml = info["azureml"]
    aml_uri = aml["tracking_uri"]
    saved = mlflow_uris.snapshot()
    note = None
    try:
        if info.get("linked") and seed is not None and seed.logged_model_uri:
            name = f"harness-endpoint-{stamp}"
            mlflow.set_tracking_uri("databricks")
            mlflow.set_registry_uri(aml_uri)
            version = mlflow.register_model(seed.logged_model_uri, name).version
            note = (f"deployed {name} v{version}: the Databricks seed model ({seed.logged_model_uri}) "
                    "registered in Azure ML through the mirror")
        elif aml_seed is not None and aml_seed.model_version:
            name, version = aml_seed.model_name, aml_seed.model_version
            note = (f"deployed {name} v{version} from the AML-only seed flow (the workspaces are not linked, "
                    "so the Databricks model has no copy in Azure ML)")
        else:
            return CheckResult("endpoint_scoring", error="not run: no model registered in Azure ML to deploy")
        mlflow.set_tracking_uri(aml_uri)
        mlflow.set_registry_uri(aml_uri)
        MlflowClient(aml_uri, aml_uri).get_model_version(name, str(version))
        data, _ = scenarios.training_data(min(rows, 2000), seed=3)
        endpoints = OnlineEndpointsClient(aml["url"], aml["token"], aml["subscription_id"], aml["resource_group"],
                                          aml["workspace_name"])
        result = check_endpoint_scoring(endpoints, name, version, data, spark=spark,
                                        endpoint_name=f"harness-{stamp[-13:].replace('-', '')}")
        if note:
            result.notes.insert(0, note)
        return result
    except Exception as exc:
        return CheckResult("endpoint_scoring", error=short_error(exc))
    finally:
        mlflow_uris.restore(saved)
