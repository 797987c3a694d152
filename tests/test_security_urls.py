"""URLs the Databricks workspace hands out and checks: never built from the caller's Host header,
and malformed signed-URL parameters are a 4xx, never a 500 (clients retry 5xx for minutes).
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from mlflow import MlflowClient

SIGNED = "/__emulator/databricks/signed/model-version"


@pytest.fixture(scope="module")
def version(databricks_ws, tmp_path_factory):
    client = MlflowClient("databricks", "databricks")
    exp = client.create_experiment(f"/Users/{databricks_ws.user}/signed-urls")
    run = client.create_run(exp)
    folder = tmp_path_factory.mktemp("model")
    (folder / "MLmodel").write_text("flavors: {}\n")
    client.log_artifact(run.info.run_id, str(folder / "MLmodel"), "model")
    client.create_registered_model("signed-url-model")
    mv = client.create_model_version("signed-url-model", f"{run.info.artifact_uri}/model", run.info.run_id)
    return mv


def test_signed_urls_use_the_configured_address_not_the_host_header(databricks_ws, version):
    headers = {"Authorization": f"Bearer {databricks_ws.token}", "Host": "attacker.example:80"}
    answer = requests.get(f"{databricks_ws.url}/api/2.0/mlflow/model-versions/get-signed-download-uri",
                          params={"name": version.name, "version": version.version, "path": "MLmodel"},
                          headers=headers, timeout=30)
    assert answer.status_code == 200, answer.text
    signed = answer.json()["signed_uri"]
    assert signed.startswith(f"{databricks_ws.url}{SIGNED}?"), signed
    assert requests.get(signed, timeout=30).content == b"flavors: {}\n"  # and it works, without a token


def test_databricks_config_reports_the_configured_host(databricks_ws):
    answer = requests.get(f"{databricks_ws.url}/.well-known/databricks-config", timeout=30,
                          headers={"Host": "attacker.example:80"})
    assert answer.json()["host"] == databricks_ws.url


@pytest.mark.parametrize("tamper", [{"expires": "\u00b2"}, {"expires": "\u0661\u0662"}, {"sig": "\u00e9" * 64},
                                    {"expires": "9" * 40}, {"sig": ""}])
def test_malformed_signed_urls_are_refused_with_a_4xx(databricks_ws, version, tamper):
    headers = {"Authorization": f"Bearer {databricks_ws.token}"}
    signed = requests.get(f"{databricks_ws.url}/api/2.0/mlflow/model-versions/get-signed-download-uri",
                          params={"name": version.name, "version": version.version, "path": "MLmodel"},
                          headers=headers, timeout=30).json()["signed_uri"]
    params = {k: v[0] for k, v in parse_qs(urlsplit(signed).query, keep_blank_values=True).items()}
    answer = requests.get(f"{databricks_ws.url}{SIGNED}", params={**params, **tamper}, timeout=30)
    assert answer.status_code == 403, (tamper, answer.status_code, answer.text)
    assert answer.json()["error_code"] == "PERMISSION_DENIED"


def _compose_defaults(text: str) -> dict[str, str]:
    """``${VAR:-default}`` / ``${VAR-default}`` defaults of the Compose file, by variable."""
    return {m["var"]: m["default"] for m in re.finditer(r"\$\{(?P<var>\w+):?-(?P<default>[^}]*)\}", text)}


def test_compose_publishes_no_fixed_tokens():
    compose = (Path(__file__).resolve().parents[1] / "docker-compose.yml").read_text()
    defaults = _compose_defaults(compose)
    for var in ("EMULATOR_DATABRICKS_TOKEN", "EMULATOR_AZUREML_TOKEN"):
        assert var in compose
        # Empty default: the container then generates a random token into its state volume.
        assert defaults.get(var, "") == "", (var, defaults.get(var))


def test_a_container_without_a_token_generates_a_random_one(tmp_path, monkeypatch):
    from emulator.control.state import StateDir

    # What docker-compose.yml hands a container when no token is set: an empty variable.
    monkeypatch.setenv("EMULATOR_DATABRICKS_TOKEN", "")
    monkeypatch.setenv("EMULATOR_AZUREML_TOKEN", "")
    first, second = StateDir(tmp_path / "a").config(), StateDir(tmp_path / "b").config()
    for role in ("databricks", "azureml"):
        assert len(first[f"{role}_token"]) >= 32 and first[f"{role}_token"] != second[f"{role}_token"]
    assert StateDir(tmp_path / "a").config() == first  # kept in the volume across restarts
