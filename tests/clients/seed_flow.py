"""The seed notebook flow, run unmodified by each MLflow client version of the matrix.

Uses only what every client venv has (mlflow, scikit-learn, numpy, databricks-sdk) and the
environment a notebook has: DATABRICKS_HOST/DATABRICKS_TOKEN for tracking URI ``databricks``,
MLFLOW_TRACKING_TOKEN + SEED_AZUREML_TRACKING_URI for the Azure ML workspace (linked to the
Databricks one, so its runs are mirrored there). Every step prints one line
``STEP <json {"step", "ok", "error"}>``; a failed step does not stop the others that don't need it.

    python seed_flow.py <tag>      # <tag> keeps names apart when several clients share a workspace
"""

import json
import os
import sys
import tempfile
import time
import traceback

import mlflow
import numpy as np
from mlflow.tracking import MlflowClient
from sklearn.linear_model import LinearRegression

TAG = sys.argv[1] if len(sys.argv) > 1 else "seed"
USER = os.environ.get("SEED_USER", "someone@example.com")
FOLDER = f"/Users/{USER}/matrix-{TAG}"
EXPERIMENT = f"{FOLDER}/exp"
MODEL = f"matrix_{TAG.replace('.', '_')}"
AML_URI = os.environ["SEED_AZUREML_TRACKING_URI"]
STEPS = []
state = {}


def step(name):
    def wrap(fn):
        STEPS.append((name, fn))
        return fn
    return wrap


def need(*keys):
    missing = [k for k in keys if k not in state]
    if missing:
        raise RuntimeError(f"skipped: an earlier step did not produce {missing}")
    return [state[k] for k in keys]


X = np.random.default_rng(0).random((30, 3))
Y = X @ [1.0, 2.0, 3.0]
work = tempfile.mkdtemp(prefix="seed-flow-")


def databricks():
    mlflow.set_tracking_uri("databricks")
    mlflow.set_registry_uri("databricks")


@step("workspace_mkdirs")
def _():
    from databricks.sdk import WorkspaceClient

    WorkspaceClient().workspace.mkdirs(FOLDER)


@step("set_experiment")
def _():
    databricks()
    state["exp_id"] = mlflow.set_experiment(EXPERIMENT).experiment_id


@step("start_run")
def _():
    need("exp_id")
    state["run"] = mlflow.start_run().info.run_id


@step("log_params")
def _():
    need("run")
    mlflow.log_params({"alpha": 0.5, "l1_ratio": 0.1})


@step("log_metrics_5_steps")
def _():
    need("run")
    for epoch in range(5):
        mlflow.log_metric("epoch_loss", 1.0 / (epoch + 1), step=epoch)


@step("log_text")
def _():
    need("run")
    mlflow.log_text("seed notes", "notes.txt")


@step("log_artifacts_nested")
def _():
    need("run")
    folder = os.path.join(work, "report")
    os.makedirs(os.path.join(folder, "plots"))
    with open(os.path.join(folder, "summary.txt"), "w") as fh:
        fh.write("summary")
    with open(os.path.join(folder, "plots", "loss.csv"), "w") as fh:
        fh.write("step,loss\n0,1.0\n")
    mlflow.log_artifacts(folder, artifact_path="report")


@step("log_model_registered_v1")
def _():
    need("run")
    model = LinearRegression().fit(X, Y)
    mlflow.sklearn.log_model(model, "model", registered_model_name=MODEL)
    state["logged_v1"] = True


@step("end_run")
def _():
    need("run")
    mlflow.end_run()


@step("log_model_registered_v2")
def _():
    need("exp_id")
    with mlflow.start_run() as run:
        mlflow.sklearn.log_model(LinearRegression().fit(X, Y), "model", registered_model_name=MODEL)
    state["run2"] = run.info.run_id


@step("registry_versions_1_2")
def _():
    need("logged_v1", "run2")
    versions = sorted(int(v.version) for v in MlflowClient().search_model_versions(f"name='{MODEL}'"))
    assert versions == [1, 2], versions


@step("get_run_params")
def _():
    (run,) = need("run")
    params = MlflowClient().get_run(run).data.params
    assert params == {"alpha": "0.5", "l1_ratio": "0.1"}, params


@step("metric_history_5_steps")
def _():
    (run,) = need("run")
    history = [(m.step, m.value) for m in MlflowClient().get_metric_history(run, "epoch_loss")]
    assert sorted(history) == [(i, 1.0 / (i + 1)) for i in range(5)], history


@step("list_artifacts_nested")
def _():
    (run,) = need("run")
    client = MlflowClient()
    top = sorted(f.path for f in client.list_artifacts(run))
    nested = sorted(f.path for f in client.list_artifacts(run, "report/plots"))
    assert {"notes.txt", "report"} <= set(top), top
    assert nested == ["report/plots/loss.csv"], nested


@step("download_artifacts")
def _():
    (run,) = need("run")
    dst = mlflow.artifacts.download_artifacts(run_id=run, artifact_path="report", dst_path=os.path.join(work, "dl"))
    with open(os.path.join(dst, "plots", "loss.csv")) as fh:
        assert fh.read() == "step,loss\n0,1.0\n"
    notes = mlflow.artifacts.download_artifacts(run_id=run, artifact_path="notes.txt",
                                                dst_path=os.path.join(work, "dl2"))
    with open(notes) as fh:
        assert fh.read() == "seed notes"


@step("load_models_uri_v1")
def _():
    need("logged_v1")
    predicted = mlflow.pyfunc.load_model(f"models:/{MODEL}/1").predict(X)
    assert np.allclose(predicted, Y)


@step("load_runs_uri")
def _():
    (run,) = need("run")
    predicted = mlflow.pyfunc.load_model(f"runs:/{run}/model").predict(X)
    assert np.allclose(predicted, Y)


def all_files(client, run_id, path=None):
    files = []
    for info in client.list_artifacts(run_id, path):
        files.extend(all_files(client, run_id, info.path) if info.is_dir else [info.path])
    return sorted(files)


@step("mirror_run_in_azureml")
def _():
    (run,) = need("run")
    aml = MlflowClient(tracking_uri=AML_URI, registry_uri=AML_URI)
    files = all_files(MlflowClient(tracking_uri="databricks"), run)
    assert files, "the Databricks run has no artifacts to compare"
    # 2.x clients resolve an mlflow-artifacts:/ root against the global tracking URI, not the client's.
    mlflow.set_tracking_uri(AML_URI)
    deadline = time.monotonic() + 120  # the mirror relays asynchronously; a loaded machine is slow
    mirrored = []
    while True:
        exp = aml.get_experiment_by_name(EXPERIMENT)
        runs = aml.search_runs([exp.experiment_id], f"tags.`emulator.source_run_id` = '{run}'") if exp else []
        if runs and len(aml.get_metric_history(runs[0].info.run_id, "epoch_loss")) == 5:
            mirrored = all_files(aml, runs[0].info.run_id)
            if mirrored == files:
                break
        if time.monotonic() > deadline:
            missing, extra = sorted(set(files) - set(mirrored)), sorted(set(mirrored) - set(files))
            raise AssertionError(f"no complete mirror of run {run} in Azure ML after 120 s "
                                 f"(files missing there: {missing}, only there: {extra})")
        time.sleep(0.2)  # brisk: the mirror usually lands within a second
    assert runs[0].data.params == {"alpha": "0.5", "l1_ratio": "0.1"}, runs[0].data.params


@step("aml_set_experiment")
def _():
    mlflow.set_tracking_uri(AML_URI)
    mlflow.set_registry_uri(AML_URI)
    state["aml_exp"] = mlflow.set_experiment(f"aml-only-{TAG}").experiment_id


@step("aml_run_params_metrics")
def _():
    need("aml_exp")
    with mlflow.start_run() as run:
        mlflow.log_param("alpha", 0.5)
        for epoch in range(5):
            mlflow.log_metric("epoch_loss", 1.0 / (epoch + 1), step=epoch)
    state["aml_run"] = run.info.run_id
    assert len(MlflowClient().get_metric_history(run.info.run_id, "epoch_loss")) == 5


@step("aml_log_text")
def _():
    (run,) = need("aml_run")
    with mlflow.start_run(run_id=run):
        mlflow.log_text("aml notes", "notes.txt")


@step("aml_log_model_registered")
def _():
    (run,) = need("aml_run")
    with mlflow.start_run(run_id=run):
        mlflow.sklearn.log_model(LinearRegression().fit(X, Y), "model", registered_model_name=f"aml_{MODEL}")
    state["aml_model"] = True


@step("aml_load_model")
def _():
    need("aml_model")
    assert np.allclose(mlflow.pyfunc.load_model(f"models:/aml_{MODEL}/1").predict(X), Y)


@step("aml_download_artifacts")
def _():
    (run,) = need("aml_run")
    path = mlflow.artifacts.download_artifacts(run_id=run, artifact_path="notes.txt", dst_path=os.path.join(work, "aml"))
    with open(path) as fh:
        assert fh.read() == "aml notes"


def main():
    print(f"CLIENT {mlflow.__version__}", flush=True)
    for name, fn in STEPS:
        try:
            fn()
            result = {"step": name, "ok": True, "error": ""}
        except BaseException as exc:  # noqa: BLE001 -- every step reports, whatever it raised
            traceback.print_exc()
            result = {"step": name, "ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
        print("STEP " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
