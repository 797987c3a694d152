"""The seed document's notebook flow as code, run with unmodified MLflow calls.

Databricks flow (tracking URI "databricks", host and token from DATABRICKS_HOST/DATABRICKS_TOKEN):
make the experiment folder with the databricks-sdk, set the experiment under /Users/<user>/...,
train a small scikit-learn model logging `epoch_loss` per epoch, log the model with
`registered_model_name` (workspace registry, `mlflow.set_registry_uri("databricks")`), then batch
score it with `mlflow.pyfunc.spark_udf` through `withColumn`.

Azure ML-only flow: `Workspace.get(...)` then `mlflow.set_tracking_uri(ws.get_mlflow_tracking_uri())`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from harness import mlflow_uris

FEATURES = ["Input_column1", "Input_column2", "Input_column3"]
TRUE_COEF = np.array([1.5, -2.0, 0.5])


def training_data(rows: int = 500, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(rows, len(FEATURES))), columns=FEATURES)
    y = pd.Series(X.to_numpy() @ TRUE_COEF + 0.3 + rng.normal(scale=0.1, size=rows), name="target")
    return X, y


@dataclass
class SeedRun:
    experiment_name: str
    experiment_id: str
    run_id: str
    model_name: str
    model_version: int | None
    model_uri: str  # runs:/<run_id>/model, as the seed builds it
    logged_model_uri: str  # models:/<model_id>
    model_id: str | None
    registered_source: str | None  # what model-versions/create was given
    scored_rows: int = 0
    score_sample: list = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


def _train_and_log(epochs: int, model_name: str, notes: str):
    """The training cell: the same unmodified MLflow calls on either backend."""
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.linear_model import SGDRegressor
    from sklearn.metrics import mean_squared_error

    X, y = training_data()
    learning_rate = 0.01
    model = SGDRegressor(learning_rate="constant", eta0=learning_rate, random_state=0)
    with mlflow.start_run() as run:
        mlflow.log_param("epochs", epochs)
        mlflow.log_param("learning_rate", learning_rate)
        mlflow.set_tag("scenario", "seed")
        for epoch in range(epochs):
            model.partial_fit(X, y)
            loss = mean_squared_error(y, model.predict(X))
            mlflow.log_metric("epoch_loss", loss, step=epoch)
        mlflow.log_text(notes, "notes.txt")
        mlflow.log_dict({"features": FEATURES, "rows": len(X)}, "data/features.json")
        # A named Series output keeps the UDF's result a plain double column (a tensor output
        # would make spark_udf return array<double>).
        signature = infer_signature(X, pd.Series(model.predict(X), name="prediction"))
        info = mlflow.sklearn.log_model(model, name="model", registered_model_name=model_name,
                                        signature=signature)
    return run, info


def run_databricks_scenario(
    url: str,
    token: str,
    user: str,
    folder: str = "harness",
    experiment: str = "seed-experiment",
    model_name: str = "seed-model",
    epochs: int = 5,
    spark=None,
    score_rows: int = 1000,
    registry_uri: str = "databricks",
) -> SeedRun:
    """The seed notebook against the Databricks workspace at `url` (sets DATABRICKS_HOST/TOKEN).

    `registry_uri`: "databricks" (the seed's workspace registry) or "databricks-uc" (MLflow 3's
    default: `model_name` is then catalog.schema.model and MLFLOW_S3_ENDPOINT_URL must be set)."""
    import mlflow
    from databricks.sdk import WorkspaceClient

    os.environ["DATABRICKS_HOST"] = url
    os.environ["DATABRICKS_TOKEN"] = token
    timings: dict[str, float] = {}
    t = time.perf_counter()
    mlflow.set_tracking_uri("databricks")
    mlflow.set_registry_uri(registry_uri)
    folder_path = f"/Users/{user}/{folder}"
    WorkspaceClient().workspace.mkdirs(folder_path)
    experimentName = f"{folder_path}/{experiment}"
    exp = mlflow.set_experiment(experimentName)
    timings["set_experiment"] = time.perf_counter() - t

    t = time.perf_counter()
    run, info = _train_and_log(epochs, model_name, notes=f"seed scenario, {epochs} epochs\n")
    timings["train_and_log"] = time.perf_counter() - t
    last_run_id = run.info.run_id
    model_uri = "runs:/" + last_run_id + "/model"
    version = getattr(info, "registered_model_version", None)
    source = None
    if version is not None:
        source = mlflow.MlflowClient().get_model_version(model_name, str(version)).source
    result = SeedRun(
        experiment_name=exp.name, experiment_id=exp.experiment_id, run_id=last_run_id,
        model_name=model_name, model_version=None if version is None else int(version),
        model_uri=model_uri, logged_model_uri=info.model_uri, model_id=getattr(info, "model_id", None),
        registered_source=source, timings=timings,
    )
    if spark is not None:
        t = time.perf_counter()
        result.scored_rows, result.score_sample = batch_score(spark, model_uri, score_rows)
        timings["batch_score"] = time.perf_counter() - t
    return result


def batch_score(spark, model_uri: str, rows: int = 1000) -> tuple[int, list]:
    """The seed's batch-scoring cell as written: positional column names (the model has a signature,
    so spark_udf maps them to its inputs in the signature's order)."""
    import mlflow

    pyfunc_udf = mlflow.pyfunc.spark_udf(spark, model_uri)
    X, _ = training_data(rows, seed=1)
    scoreDf = spark.createDataFrame(X)
    preds = scoreDf.withColumn("prediction", pyfunc_udf('Input_column1', 'Input_column2', 'Input_column3'))
    sample = [row.asDict() for row in preds.limit(3).collect()]
    return preds.count(), sample


def run_azureml_scenario(
    subscription_id: str,
    resource_group: str,
    workspace_name: str,
    experiment: str = "seed-experiment-azureml",
    model_name: str = "seed-model",
    epochs: int = 3,
) -> SeedRun:
    """The seed's "track only in Azure ML" variant: tracking (and so registry) URI from the workspace."""
    import mlflow

    from harness.azureml import Workspace

    ws = Workspace.get(name=workspace_name, subscription_id=subscription_id, resource_group=resource_group)
    uri = ws.get_mlflow_tracking_uri()
    with mlflow_uris.using(uri, uri):
        exp = mlflow.set_experiment(experiment)
        t = time.perf_counter()
        run, info = _train_and_log(epochs, model_name, notes="seed scenario, Azure ML only\n")
        version = getattr(info, "registered_model_version", None)
        source = mlflow.MlflowClient().get_model_version(model_name, str(version)).source if version else None
        return SeedRun(
            experiment_name=exp.name, experiment_id=exp.experiment_id, run_id=run.info.run_id,
            model_name=model_name, model_version=None if version is None else int(version),
            model_uri=f"runs:/{run.info.run_id}/model", logged_model_uri=info.model_uri,
            model_id=getattr(info, "model_id", None), registered_source=source,
            timings={"train_and_log": time.perf_counter() - t},
        )


# The seed's Spark ML flavour: `mlflow.spark.log_model(model, artifact_path="model", registered_model_name=...)`
# and its scoring line `pyfunc_udf('Input_column1', 'Input_column2', ...)`.
SPARK_FEATURES = FEATURES[:2]


@dataclass
class SparkMLRuns:
    """The Spark ML flavour's runs: as the seed writes it (no signature), and with a signature."""

    experiment_name: str
    model_name: str
    plain: SeedRun  # mlflow.spark.log_model(model, artifact_path="model", registered_model_name=...)
    signed: SeedRun  # the same, with signature= and input_example=
    versions: list[int] = field(default_factory=list)  # what each log_model registered, in order


def spark_training_frame(spark, rows: int = 200, seed: int = 0):
    X, y = training_data(rows, seed)
    return spark.createDataFrame(X[SPARK_FEATURES].assign(target=y))


def train_spark_pipeline(spark, rows: int = 200):
    """Pipeline(VectorAssembler(["Input_column1", "Input_column2"]), LinearRegression), fitted on `rows` rows."""
    from pyspark.ml import Pipeline
    from pyspark.ml.feature import VectorAssembler
    from pyspark.ml.regression import LinearRegression

    assembler = VectorAssembler(inputCols=SPARK_FEATURES, outputCol="features")
    return Pipeline(stages=[assembler, LinearRegression(labelCol="target", maxIter=10)]).fit(
        spark_training_frame(spark, rows))


def _log_spark_model(spark, model, model_name: str, with_signature: bool) -> tuple:
    import mlflow
    import mlflow.spark
    from mlflow.models import infer_signature

    X, _ = training_data(20, seed=4)
    X = X[SPARK_FEATURES]
    with mlflow.start_run() as run:
        mlflow.set_tag("scenario", "seed-spark-ml")
        mlflow.log_param("signature", with_signature)
        if with_signature:
            preds = model.transform(spark.createDataFrame(X)).select("prediction").toPandas()["prediction"]
            info = mlflow.spark.log_model(model, artifact_path="model", registered_model_name=model_name,
                                          signature=infer_signature(X, preds), input_example=X.head(3))
        else:
            # The seed's line, as written.
            info = mlflow.spark.log_model(model, artifact_path = "model",  # noqa: E251
                                          registered_model_name = model_name)  # noqa: E251
    return run, info


def run_spark_ml_scenario(url: str, token: str, user: str, spark, folder: str = "harness",
                          experiment: str = "seed-experiment", model_name: str = "seed-model-spark",
                          rows: int = 200) -> SparkMLRuns:
    """The seed's `mlflow.spark.log_model(..., registered_model_name=...)` on the Databricks workspace:
    one run as the seed writes it (no signature), one with signature and input example; each
    registers a new version of `model_name`."""
    import mlflow
    from databricks.sdk import WorkspaceClient

    os.environ["DATABRICKS_HOST"] = url
    os.environ["DATABRICKS_TOKEN"] = token
    mlflow.set_tracking_uri("databricks")
    mlflow.set_registry_uri("databricks")
    folder_path = f"/Users/{user}/{folder}"
    WorkspaceClient().workspace.mkdirs(folder_path)
    exp = mlflow.set_experiment(f"{folder_path}/{experiment}")
    t = time.perf_counter()
    model = train_spark_pipeline(spark, rows)
    fit_s = time.perf_counter() - t
    client = mlflow.MlflowClient()
    out = []
    for with_signature in (False, True):
        t = time.perf_counter()
        run, info = _log_spark_model(spark, model, model_name, with_signature)
        # mlflow.spark.log_model returns the info without the version: the registry says which it made.
        made = client.search_model_versions(f"name='{model_name}' and run_id='{run.info.run_id}'")
        version = max((int(v.version) for v in made), default=None)
        out.append(SeedRun(
            experiment_name=exp.name, experiment_id=exp.experiment_id, run_id=run.info.run_id,
            model_name=model_name, model_version=version, model_uri=f"runs:/{run.info.run_id}/model",
            logged_model_uri=info.model_uri, model_id=getattr(info, "model_id", None),
            registered_source=client.get_model_version(model_name, str(version)).source if version else None,
            timings={"fit": fit_s, "log_model": time.perf_counter() - t},
        ))
    return SparkMLRuns(experiment_name=exp.name, model_name=model_name, plain=out[0], signed=out[1],
                       versions=[r.model_version for r in out])


def log_multi_output_model(rows: int = 200) -> str:
    """A scikit-learn model with two outputs per row (logged in the active experiment, not registered):
    the case for the seed's `result_type=ArrayType(FloatType())`. Returns its runs:/ URI."""
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.linear_model import LinearRegression

    X, y = training_data(rows)
    Y = np.c_[y, -2 * y]
    model = LinearRegression().fit(X, Y)
    with mlflow.start_run() as run:
        mlflow.set_tag("scenario", "seed-multi-output")
        mlflow.sklearn.log_model(model, artifact_path="model", signature=infer_signature(X, model.predict(X)))
    return f"runs:/{run.info.run_id}/model"


def mirrored_model_path(azureml_tracking_uri: str, azureml_run_id: str, dst: str) -> str:
    """The Azure ML mirror's copy of a run's model, downloaded through the Azure ML tracking URI."""
    import mlflow

    return mlflow.artifacts.download_artifacts(f"runs:/{azureml_run_id}/model", dst_path=dst,
                                               tracking_uri=azureml_tracking_uri)
