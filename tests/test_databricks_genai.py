"""Databricks: MLflow 3 GenAI APIs an export tool walks (evaluation datasets, the UC prompt registry)."""

import base64

import mlflow
import pytest
import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from emulator.services.databricks.uc.prompts import BAD_PROMPT_NAME
from emulator.services.databricks.uc.store import BAD_NAME

pytestmark = pytest.mark.shared_emulator  # the session's pair, reset (tests/conftest.py)


def test_search_datasets_on_databricks_lists_the_workspaces_datasets(databricks_ws, monkeypatch):
    # Written through the stock /api/3.0 dataset routes, as a plain MLflow client at the workspace does.
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", databricks_ws.token)
    mlflow.set_tracking_uri(databricks_ws.url)
    exp = mlflow.set_experiment(f"/Users/{databricks_ws.user}/eval-datasets")
    other = mlflow.set_experiment(f"/Users/{databricks_ws.user}/eval-datasets-other")
    made = []
    for name in ("main.default.qa_v1", "main.default.qa_v2"):
        dataset = mlflow.genai.datasets.create_dataset(name=name, experiment_id=exp.experiment_id)
        dataset.merge_records([{"inputs": {"q": "1+1"}, "expectations": {"a": "2"}}])
        made.append(dataset)
    assert mlflow.genai.datasets.get_dataset(dataset_id=made[0].dataset_id).to_df().shape[0] == 1

    # Tracking URI "databricks": the client asks GET /api/2.0/managed-evals/datasets (was 501).
    mlflow.set_tracking_uri("databricks")
    found = mlflow.genai.datasets.search_datasets(experiment_ids=exp.experiment_id)
    assert {d.dataset_id: d.name for d in found} == {d.dataset_id: d.name for d in made}
    assert all(d.created_time == m.created_time for d, m in zip(sorted(found, key=lambda d: d.dataset_id),
                                                                sorted(made, key=lambda d: d.dataset_id)))
    assert mlflow.genai.datasets.search_datasets(experiment_ids=other.experiment_id) == []
    # Pages of one: the workspace's page token leads to the second dataset, then ends.
    first = MlflowClient().search_datasets(experiment_ids=[exp.experiment_id], max_results=1)
    second = MlflowClient().search_datasets(experiment_ids=[exp.experiment_id], max_results=1,
                                            page_token=first.token)
    assert first.token and {first[0].dataset_id, second[0].dataset_id} == {d.dataset_id for d in made}
    if second.token:
        assert not MlflowClient().search_datasets(experiment_ids=[exp.experiment_id], page_token=second.token)

    # Bad input is a clear 400 in Databricks' shape.
    url, auth = f"{databricks_ws.url}/api/2.0/managed-evals/datasets", {"Authorization": f"Bearer {databricks_ws.token}"}
    for query in ({"filter": "name = 'x'"}, {"filter": "experiment_id='1' OR 1=1"}, {"page_size": "-3"},
                  {"page_size": "many"}, {"page_token": "not-a-token"},
                  {"page_token": base64.b64encode(b"[1]").decode()},  # was the store's 500
                  {"page_token": base64.b64encode(b'{"offset": -5}').decode()}):
        answer = requests.get(url, params=query, headers=auth, timeout=60)
        assert answer.status_code == 400, (query, answer.status_code, answer.text)
        assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert requests.get(url, timeout=60).status_code == 401


def test_prompt_registry_refuses_a_two_level_name_in_prompt_wording(databricks_ws):
    mlflow.set_registry_uri("databricks-uc")
    for call in (lambda: mlflow.genai.register_prompt(name="default.greeting", template="Hi {{name}}"),
                 lambda: mlflow.genai.load_prompt("prompts:/default.greeting/1"),
                 lambda: MlflowClient().get_prompt("greeting")):
        with pytest.raises(MlflowException) as err:
            call()
        assert err.value.error_code == "INVALID_PARAMETER_VALUE"
        assert BAD_PROMPT_NAME in err.value.message and BAD_NAME not in err.value.message
    # Models keep their own wording.
    with pytest.raises(MlflowException, match="Bad model name"):
        MlflowClient().create_registered_model("default.greeting")


def test_azureml_serves_datasets_as_stock_and_refuses_prompts(emulator, monkeypatch):
    # The Azure ML workspace matches a stock server for datasets; pinned so both workspaces stay covered.
    aml = emulator.azureml
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", aml.token)
    mlflow.set_tracking_uri(aml.tracking_uri)
    mlflow.set_registry_uri(aml.tracking_uri)
    exp = mlflow.set_experiment("eval-datasets")
    dataset = mlflow.genai.datasets.create_dataset(name="qa", experiment_id=exp.experiment_id)
    dataset.merge_records([{"inputs": {"q": "1+1"}, "expectations": {"a": "2"}}])
    assert [d.dataset_id for d in mlflow.genai.datasets.search_datasets(experiment_ids=exp.experiment_id)] \
        == [dataset.dataset_id]
    assert mlflow.genai.datasets.get_dataset(dataset_id=dataset.dataset_id).to_df().shape[0] == 1
    # Prompts are model versions with a placeholder source, which Azure ML's registry refuses
    # (mlflow/mlflow#15329; fidelity: Azure ML registration rules).
    with pytest.raises(MlflowException, match="Model source from file must be in the following format"):
        mlflow.genai.register_prompt(name="greeting", template="Hi {{name}}")


def test_prompt_registry_round_trips_three_level_prompts(databricks_ws):
    # Was 501 for every call: a full export found no prompts and could not write any.
    mlflow.set_registry_uri("databricks-uc")
    name = "main.default.greeting"
    first = mlflow.genai.register_prompt(name=name, template="Hi {{who}}", commit_message="first", tags={"team": "a"})
    # The second registration meets ALREADY_EXISTS on create and goes on to version 2.
    chat = mlflow.genai.register_prompt(name=name, template=[{"role": "user", "content": "Hey {{who}}"}])
    assert (first.version, chat.version) == (1, 2)
    assert mlflow.genai.load_prompt(f"prompts:/{name}/1").format(who="Ada") == "Hi Ada"
    assert mlflow.genai.load_prompt(f"prompts:/{name}/2").format(who="Ada") == [{"role": "user", "content": "Hey Ada"}]
    mlflow.genai.set_prompt_alias(name, alias="prod", version=1)
    assert mlflow.genai.load_prompt(f"prompts:/{name}@prod").version == 1
    client = MlflowClient()
    assert [p.name for p in mlflow.genai.search_prompts("catalog = 'main' AND schema = 'default'")] == [name]
    assert [v.version for v in client.search_prompt_versions(name)] == [2, 1]
    info = client.get_prompt(name)
    # (the client also tags the prompt with the experiments it was registered from)
    assert info.description == "first" and info.tags["team"] == "a"
    with pytest.raises(MlflowException, match="Schema 'main.nope' does not exist"):
        mlflow.genai.register_prompt(name="main.nope.greeting", template="x")
    assert mlflow.genai.load_prompt("prompts:/main.default.missing/1", allow_missing=True) is None
    # Bad input is a clear 4xx in Databricks' shape.
    base, auth = f"{databricks_ws.url}/api/2.0/mlflow/unity-catalog/prompts", {"Authorization": f"Bearer {databricks_ws.token}"}
    for method, path, body, status in (("GET", f"/{name}/versions/abc", None, 400),
                                       ("GET", f"/{name}/versions/{10**30}", None, 400),
                                       ("POST", f"/{name}/versions", {"prompt_version": {}}, 400),
                                       ("POST", f"/{name}/aliases/x", {"version": "7"}, 404),
                                       ("POST", "/search", {}, 400)):
        answer = requests.request(method, base + path, json=body, headers=auth, timeout=60)
        assert answer.status_code == status and "error_code" in answer.json(), (path, answer.status_code, answer.text)
    # The client refuses to delete a prompt with versions; once they are gone, so is the prompt.
    for version in (2, 1):
        client.delete_prompt_version(name, version)
    client.delete_prompt(name)
    assert client.get_prompt(name) is None
