"""Online deployments of a model with an extra requirement: the environment's first build, then a
re-deploy with the environment cached, beside a model that needs nothing (the fast path).

The workspace builds into a new, empty environment folder with an empty download cache (what a
new machine sees: the extra requirement and the packages it pulls are downloaded from PyPI).
"""

from __future__ import annotations

import os
import textwrap
import time
from pathlib import Path
from unittest import mock

import mlflow

from emulator.settings import MODEL_ENVS_ENV
from harness import mlflow_uris
from harness.online_endpoints import OnlineEndpointsClient
from harness.workspaces import Emulator

EXTRA = "lightgbm==4.6.0"
MODEL = """
    import mlflow

    class Doubles(mlflow.pyfunc.PythonModel):
        def load_context(self, context):
            {load}

        def predict(self, context, model_input):
            return model_input * 2

    mlflow.models.set_model(Doubles())
"""
NEEDS_EXTRA = "import lightgbm  # the extra requirement: only the model's environment has it"


def _register(ws, work: Path, name: str, extra: list[str], load: str) -> None:
    code = work / f"{name}.py"
    code.write_text(textwrap.dedent(MODEL).replace("{load}", load))
    with mock.patch.dict(os.environ, {"MLFLOW_TRACKING_TOKEN": ws.token}):
        with mlflow_uris.using(ws.tracking_uri, ws.tracking_uri):  # and back, active experiment included
            mlflow.set_experiment("bench-model-envs")
            with mlflow.start_run():
                mlflow.pyfunc.log_model(name="model", python_model=str(code), extra_pip_requirements=extra,
                                        registered_model_name=name)


def _deploy(ml: OnlineEndpointsClient, endpoint: str, model: str) -> float:
    started = time.perf_counter()
    ml.create_deployment(endpoint, "blue", model)  # waits for the operation to end (raises if Failed)
    return round(time.perf_counter() - started, 2)


def measure(work: Path) -> dict:
    envs = work / "model-envs"
    # An empty download cache too (UV_CACHE_DIR unset: under the new environment folder).
    overrides = {MODEL_ENVS_ENV: str(envs)}
    with mock.patch.dict(os.environ, overrides):
        os.environ.pop("UV_CACHE_DIR", None)
        emu = Emulator(work / "model-envs-state").up()
    try:
        aml = emu.azureml
        _register(aml, work, "needs-lightgbm", [EXTRA], NEEDS_EXTRA)
        _register(aml, work, "needs-nothing", [], "pass")
        ml = OnlineEndpointsClient.for_workspace(aml)
        for ep in ("ep-fast", "ep-first", "ep-warm"):
            ml.create_endpoint(ep)
        fast = _deploy(ml, "ep-fast", "azureml:needs-nothing:1")
        first = _deploy(ml, "ep-first", "azureml:needs-lightgbm:1")
        warm = _deploy(ml, "ep-warm", "azureml:needs-lightgbm:1")
        first_log = ml.logs("ep-first", "blue")
        built_line = next((line.split("Environment: ", 1)[1] for line in first_log.splitlines()
                           if "Environment: built in" in line), None)
        return {"extra_requirement": EXTRA, "first_build_deploy_s": first, "warm_cache_deploy_s": warm,
                "no_extra_requirement_deploy_s": fast,
                "build_log_line": built_line,
                "warm_reused": "reusing env-" in ml.logs("ep-warm", "blue")}
    finally:
        emu.down()


if __name__ == "__main__":  # python -m bench.model_envs: this figure alone
    import json
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="emulator-bench-envs-"))
    try:
        print(json.dumps(measure(folder), indent=2))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
