"""The "View run" / "View experiment" links the real client prints lead to the MLflow UI's pages."""

from __future__ import annotations

import contextlib
import io
import re

import mlflow
import pytest
import requests

pytestmark = pytest.mark.shared_emulator  # the session's pair, reset (tests/conftest.py)


def test_printed_run_link_redirects_to_the_ui_page(databricks_ws):
    mlflow.set_experiment(f"/Users/{databricks_ws.user}/ui-links")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        with mlflow.start_run() as run:
            pass
    links = dict(re.findall(r"View (run|experiment) .*?at: (\S+)", out.getvalue()))
    exp_id = run.info.experiment_id
    assert links["run"] == f"{databricks_ws.url}/ml/experiments/{exp_id}/runs/{run.info.run_id}"
    auth = {"Authorization": f"Bearer {databricks_ws.token}"}
    for kind, url in links.items():
        answer = requests.get(url, headers=auth, allow_redirects=False, timeout=30)
        assert answer.status_code == 302, (kind, answer.status_code, answer.text[:200])
        assert answer.headers["Location"] == "/#/" + url.split("/ml/", 1)[1]
        page = requests.get(url, headers=auth, timeout=30)  # follows to the UI's index page
        assert page.status_code == 200 and "<html" in page.text.lower()


def test_fragment_style_link_is_rewritten_in_the_page(databricks_ws):
    # _construct_databricks_run_url: <host>?o=<workspace id>#mlflow/experiments/<id>/runs/<run>
    answer = requests.get(f"{databricks_ws.url}/?o=1234567890123456",
                          headers={"Authorization": f"Bearer {databricks_ws.token}"}, timeout=30)
    assert answer.status_code == 200
    assert 'indexOf("#mlflow/")' in answer.text and "location.replace" in answer.text


def test_ui_links_need_a_token(databricks_ws):
    answer = requests.get(f"{databricks_ws.url}/ml/experiments/1", allow_redirects=False, timeout=30)
    assert answer.status_code == 401
