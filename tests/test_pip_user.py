"""A pip user's first hour: the wheel installed with [pytest] into a fresh venv outside the checkout,
then a small user test suite run with the plugin (no source tree on the path), and Docker mode from
the installed package in a directory of its own."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib
from mlflow import MlflowClient

from emulator.control.docker import images, packaged
from harness import client_venvs

# Fixtures: the checkout's image (base image, wheelhouse, dependency layer), a project removed afterwards.
from harness.compose_fixtures import (  # noqa: F401
    compose_project,
    emulator_image,
    free_published_ports,
)

ROOT = Path(__file__).resolve().parents[1]

USER_TESTS = '''
import mlflow
from harness.pytest_plugin import assert_versions_increment


class Doubler(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input):
        return [2 * x for x in model_input["x"]]


def test_my_model_registers_v1_then_v2(fresh_workspaces, databricks_workspace):
    mlflow.set_tracking_uri("databricks")
    mlflow.set_registry_uri("databricks")
    mlflow.set_experiment(f"/Users/{databricks_workspace.user}/pip-user")
    for _ in range(2):
        with mlflow.start_run():
            mlflow.log_param("lr", 0.1)
            mlflow.pyfunc.log_model(name="model", python_model=Doubler(), registered_model_name="pip_user_model")
    assert_versions_increment("pip_user_model")
    import pandas as pd

    assert list(mlflow.pyfunc.load_model("models:/pip_user_model/2").predict(pd.DataFrame({"x": [1, 2]}))) == [2, 4]


def test_each_test_starts_empty(fresh_workspaces):
    client = mlflow.MlflowClient("databricks", "databricks")
    assert client.search_registered_models() == []


def test_a_typo_in_the_model_name_fails(fresh_workspaces):
    import pytest

    with pytest.raises(pytest.fail.Exception, match="does not exist"):
        assert_versions_increment("pip_user_modle")
'''


def _pins() -> tuple[str, ...]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return tuple(project["dependencies"] + project["optional-dependencies"]["pytest"])


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    wheels = tmp_path_factory.mktemp("wheels")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                    "-w", str(wheels), str(ROOT)], check=True, timeout=600)
    return next(wheels.glob("mlflow_azure_emulator-*.whl"))


@pytest.fixture(scope="module")
def pip_user_python(wheel) -> Path:
    """A fresh venv outside the checkout with the wheel installed (deps cached by pins; the wheel is new)."""
    python = client_venvs.ensure("pip-user", _pins())
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
                    "--force-reinstall", str(wheel)], check=True, timeout=600)
    return python


def _user_env(home: Path) -> dict[str, str]:
    """The user's machine: nothing of ours in ~ or in the environment."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "PYTEST", "DATABRICKS_", "MLFLOW_", "EMULATOR_", "XDG_"))}
    env["HOME"] = str(home)
    return env


def test_wheel_with_pytest_extra_runs_a_user_suite(pip_user_python, tmp_path):
    python = pip_user_python
    project = tmp_path / "my-project"
    project.mkdir()
    (project / "test_my_model.py").write_text(USER_TESTS)
    env = _user_env(tmp_path)
    run = subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=project, env=env,
                         capture_output=True, text=True, timeout=1800)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "3 passed" in run.stdout
    # The plugin came from the installed wheel, not from this checkout.
    where = subprocess.run([str(python), "-c", "import harness; print(harness.__file__)"], cwd=project, env=env,
                           capture_output=True, text=True, timeout=120).stdout
    assert str(ROOT) not in where and "site-packages" in where


def test_wheel_ships_the_top_level_docker_files_unchanged(wheel):
    # setup.py copies them at build time: the top-level files stay the single source.
    with zipfile.ZipFile(wheel) as zf:
        for name in packaged.SHIPPED:
            assert zf.read(f"emulator/control/docker/files/{name}") == (ROOT / name).read_bytes(), name


def test_installed_package_rebuilds_the_wheel_it_was_installed_from(pip_user_python, wheel, tmp_path):
    # What the image installs from an installed package (no checkout): the same files as the wheel.
    out = tmp_path / "rebuilt"
    code = ("import sys; from pathlib import Path; from emulator.control.docker import packaged; "
            "print(packaged.checkout_root()); print(packaged.write_wheel(Path(sys.argv[1]))[0])")
    run = subprocess.run([str(pip_user_python), "-c", code, str(out)], cwd=tmp_path, env=_user_env(tmp_path),
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    checkout, rebuilt = run.stdout.split()
    assert checkout == "None"
    assert Path(rebuilt).name == wheel.name
    record = next(n for n in zipfile.ZipFile(wheel).namelist() if n.endswith(".dist-info/RECORD"))
    with zipfile.ZipFile(wheel) as original, zipfile.ZipFile(rebuilt) as copy:
        assert sorted(copy.namelist()) == sorted(original.namelist())
        for name in original.namelist():
            if name == record:  # same entries, perhaps in another order
                assert sorted(copy.read(name).split()) == sorted(original.read(name).split())
            else:
                assert copy.read(name) == original.read(name), name
    # pip takes it for a wheel (name, tags, metadata); the Docker test below installs it in the image.
    check = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "-q",
                            "--disable-pip-version-check", rebuilt], capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stderr


@pytest.mark.docker
def test_docker_mode_from_the_installed_wheel_in_any_directory(pip_user_python, emulator_image, compose_project,
                                                               tmp_path, monkeypatch):
    """`emulator images build --offline` and `up/status/down --docker` of the installed package, run in a
    directory outside the checkout: the packaged Dockerfile and Compose file, and a wheel of the
    installed distribution as the image's project."""
    emulator = pip_user_python.parent / "emulator"
    home = tmp_path / "home"
    work = tmp_path / "somewhere"  # the user's project dir; the state dir is created here
    work.mkdir(parents=True)
    # A warm cache, as a second build on the user's machine has: the checkout's wheelhouse (same pins,
    # hence the same key). The base image and the dependency layer are the engine's, shared.
    cache = home / ".cache" / "mlflow-azure-emulator" / "image-build"
    cache.mkdir(parents=True)
    shutil.copytree(ROOT / ".emulator-cache" / "wheelhouse", cache / "wheelhouse", copy_function=_link_or_copy)
    image = f"mlflow-azure-emulator:pip-user-{os.getpid()}-{secrets.token_hex(3)}"
    env = _user_env(home)
    env.update({**free_published_ports(),
                "EMULATOR_COMPOSE_PROJECT": compose_project,
                "EMULATOR_IMAGE": image})

    def cli(*args, check=True):
        run = subprocess.run([str(emulator), *args], cwd=work, env=env, capture_output=True, text=True,
                             timeout=900)
        assert not check or run.returncode == 0, f"emulator {' '.join(args)}:\n{run.stdout}\n{run.stderr}"
        return run

    try:
        built = cli("images", "build", "--offline", "--image", image)
        assert f"reusing {images.BASE_IMAGE}" in built.stdout  # no debootstrap
        assert f"reusing {cache / 'wheelhouse'}" in built.stdout
        assert (cache / "dist").is_dir() and images.docker_image_id(image)
        up = cli("up", "--docker")
        try:
            info = json.loads(cli("status", "--json").stdout)
            assert info["mode"] == "docker" and info["state_dir"] == str((work / ".emulator").resolve())
            deployment = json.loads((work / ".emulator" / "deployment.json").read_text())
            assert "site-packages" in deployment["compose_file"] and str(ROOT) not in deployment["compose_file"]
            # Both workspaces answer the real MLflow client with the state dir's tokens.
            aml, db = info["azureml"], info["databricks"]
            monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", aml["token"])
            aml_client = MlflowClient(tracking_uri=aml["tracking_uri"])
            assert aml_client.get_experiment(aml_client.create_experiment("from-wheel")).name == "from-wheel"
            monkeypatch.delenv("MLFLOW_TRACKING_TOKEN")
            monkeypatch.setenv("DATABRICKS_HOST", db["url"])
            monkeypatch.setenv("DATABRICKS_TOKEN", db["token"])
            db_client = MlflowClient(tracking_uri="databricks")
            name = f"/Users/{db['user']}/from-wheel"
            assert db_client.get_experiment(db_client.create_experiment(name)).name == name
        finally:
            down = cli("down", "--docker", "--volumes")
        assert "starting Compose project" in up.stdout
        assert "deleted its volumes" in down.stdout
        assert cli("status", "--json", check=False).returncode == 3  # nothing answers any more
    finally:
        subprocess.run(["docker", "image", "rm", "-f", image], capture_output=True, timeout=300)


def _link_or_copy(src, dst):
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
