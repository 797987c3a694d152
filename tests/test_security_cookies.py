"""The UI login cookie opens the MLflow UI of its own workspace, from its own pages, and nothing else
(docs/pages/security.md). Raw `requests` plays the browser: it sends what a browser would
(cookie, Origin, Sec-Fetch-Site) for a page on another local port.
"""

from __future__ import annotations

import pytest
import requests

pytestmark = pytest.mark.shared_emulator  # the session's pair, reset (tests/conftest.py)

SEARCH = "/ajax-api/2.0/mlflow/experiments/search"
FOREIGN = "http://127.0.0.1:1"  # another local port: same-site for the browser, another origin


def cookie_name(role: str, url: str) -> str:
    from emulator.pipeline.auth import (
        cookie_name as name,  # imported here: the module's rules are under test
    )

    return name(role, url)


def role_of(emulator, ws) -> str:
    return "databricks" if ws.url == emulator.databricks.url else "azureml"


@pytest.fixture(params=["databricks", "azureml"])
def ws(request, emulator):
    return getattr(emulator, request.param)


def login(ws, session: requests.Session | None = None) -> requests.Session:
    session = session or requests.Session()
    answer = session.get(f"{ws.url}/?token={ws.token}", timeout=30)
    assert answer.status_code == 200 and "<html" in answer.text.lower()
    return session


def test_token_in_the_url_only_logs_the_ui_in_and_is_dropped_from_the_url(emulator, ws):
    answer = requests.get(f"{ws.url}/?token={ws.token}&o=1", timeout=30, allow_redirects=False)
    assert answer.status_code == 302
    assert answer.headers["Location"] == "/?o=1"
    name = cookie_name(role_of(emulator, ws), ws.url)
    cookie = answer.cookies.get(name)
    assert cookie and ws.token not in cookie  # the cookie is not the bearer token
    assert "httponly" in answer.headers["Set-Cookie"].lower()
    # Never API auth: ?token= on an API path is no credential at all.
    api = requests.get(f"{ws.url}/api/2.0/mlflow/experiments/search", params={"token": ws.token,
                       "max_results": 1}, timeout=30)
    assert api.status_code == 401


def test_a_wrong_token_in_the_url_sets_no_cookie(ws):
    answer = requests.get(f"{ws.url}/?token=not-it", timeout=30, allow_redirects=False)
    assert answer.status_code == 401 and not answer.cookies


def test_the_cookie_is_no_credential_for_api_admin_or_dbfs_routes(emulator, ws):
    ui = login(ws)
    ui.headers["Origin"] = ws.url
    for method, path in [("GET", "/api/2.0/mlflow/experiments/search?max_results=1"),
                         ("POST", "/api/2.0/mlflow/experiments/create"),
                         ("GET", "/__emulator/mirror"),
                         ("POST", "/__emulator/unlink"),
                         ("GET", "/dbfs/databricks/mlflow-tracking/0/x"),
                         ("GET", "/api/2.0/dbfs/list?path=/")]:
        answer = ui.request(method, f"{ws.url}{path}", json={"name": "/Users/x/y"}, timeout=30)
        assert answer.status_code == 401, (method, path, answer.status_code, answer.text)


def test_ui_calls_work_from_the_ui_and_are_refused_from_other_origins(ws):
    ui = login(ws)
    body = {"max_results": 5}
    same = ui.post(f"{ws.url}{SEARCH}", json=body, headers={"Origin": ws.url, "Sec-Fetch-Site": "same-origin"},
                   timeout=30)
    assert same.status_code == 200 and "experiments" in same.json()
    assert ui.get(f"{ws.url}/ajax-api/2.0/mlflow/experiments/get", params={"experiment_id": "0"},
                  headers={"Sec-Fetch-Site": "same-origin"}, timeout=30).status_code == 200
    refused = [
        ui.post(f"{ws.url}{SEARCH}", json=body, headers={"Origin": FOREIGN}, timeout=30),
        ui.post(f"{ws.url}{SEARCH}", json=body, headers={"Origin": FOREIGN, "Sec-Fetch-Site": "same-site"},
                timeout=30),
        ui.get(f"{ws.url}/ajax-api/2.0/mlflow/experiments/get", params={"experiment_id": "0"},
               headers={"Sec-Fetch-Site": "same-site"}, timeout=30),
        # A form or text/plain POST from a page without Origin proof (a browser always sends it).
        ui.post(f"{ws.url}{SEARCH}", data='{"max_results": 5}', headers={"Content-Type": "text/plain"},
                timeout=30),
        ui.post(f"{ws.url}/graphql", json={"query": "{ __typename }"}, headers={"Origin": FOREIGN}, timeout=30),
    ]
    assert [r.status_code for r in refused] == [403] * len(refused), [r.text for r in refused]
    assert all(r.json()["error_code"] == "PERMISSION_DENIED" for r in refused)


def test_no_credentialed_cors_for_other_origins(ws):
    for path in (SEARCH, "/api/2.0/mlflow/experiments/search", "/graphql"):
        preflight = requests.options(f"{ws.url}{path}", timeout=30, headers={
            "Origin": FOREIGN, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type"})
        granted = {k.lower() for k in preflight.headers} & {"access-control-allow-origin",
                                                           "access-control-allow-credentials"}
        assert not granted, (path, dict(preflight.headers))
    ui = login(ws)
    answer = ui.post(f"{ws.url}{SEARCH}", json={"max_results": 5}, headers={"Origin": ws.url}, timeout=30)
    assert "Access-Control-Allow-Origin" not in answer.headers
    assert answer.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert answer.headers["X-Content-Type-Options"] == "nosniff"


def test_both_workspaces_keep_their_own_cookie(emulator):
    browser = requests.Session()  # one browser: cookies for 127.0.0.1 go to every port
    db, aml = emulator.databricks, emulator.azureml
    login(db, browser)
    login(aml, browser)
    names = {cookie_name("databricks", db.url), cookie_name("azureml", aml.url)}
    assert names <= set(browser.cookies.keys())
    # Logging into one did not log the other out, and neither cookie holds a bearer token.
    for ws in (db, aml):
        answer = browser.post(f"{ws.url}{SEARCH}", json={"max_results": 5}, headers={"Origin": ws.url}, timeout=30)
        assert answer.status_code == 200, answer.text
    assert not {db.token, aml.token} & set(browser.cookies.values())


def test_the_azureml_ui_login_keeps_the_scope_prefix(emulator):
    aml = emulator.azureml
    answer = requests.get(f"{aml.tracking_uri}/?token={aml.token}", timeout=30, allow_redirects=False)
    assert answer.status_code == 302
    assert answer.headers["Location"] == aml.tracking_uri.split(aml.url, 1)[1] + "/"


def test_admin_changes_need_the_bearer_token_and_a_json_body(emulator):
    db = emulator.databricks
    bearer = {"Authorization": f"Bearer {db.token}"}
    before = requests.get(f"{db.url}/__emulator/mirror", headers=bearer, timeout=30).json()
    body = '{"azureml_url": "http://127.0.0.1:1", "azureml_token": "attacker"}'
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        answer = requests.post(f"{db.url}/__emulator/link", data=body, timeout=30,
                               headers={**bearer, "Content-Type": content_type})
        assert answer.status_code == 415, (content_type, answer.text)
        assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    after = requests.get(f"{db.url}/__emulator/mirror", headers=bearer, timeout=30).json()
    assert after["linked"] == before["linked"] and after.get("azureml_url") == before.get("azureml_url")
    # The same call as JSON is accepted (it fails validation for its own reasons, not the type).
    answer = requests.post(f"{db.url}/__emulator/link", json={"azureml_url": "ftp://x", "azureml_token": "t"},
                           headers=bearer, timeout=30)
    assert answer.status_code == 400


BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8"


def test_a_browser_without_a_login_gets_a_page_saying_how_to_log_in(ws):
    for path in ("/", "/ml/experiments/0"):
        page = requests.get(f"{ws.url}{path}", headers={"Accept": BROWSER_ACCEPT}, timeout=30)
        assert page.status_code == 401, (path, page.text)
        assert page.headers["Content-Type"].startswith("text/html")
        assert "emulator status" in page.text and "?token=" in page.text
        assert ws.token not in page.text
    wrong = requests.get(f"{ws.url}/?token=not-it", headers={"Accept": BROWSER_ACCEPT}, timeout=30)
    assert wrong.status_code == 401 and "emulator status" in wrong.text and not wrong.cookies


def test_api_clients_keep_the_json_401(ws):
    for headers in ({}, {"Accept": "*/*"}, {"Accept": "application/json"}):
        answer = requests.get(f"{ws.url}/", headers=headers, timeout=30)
        assert answer.status_code == 401 and answer.headers["Content-Type"].startswith("application/json")
    # Only page loads: an API route stays JSON even for a browser's Accept.
    api = requests.get(f"{ws.url}/api/2.0/mlflow/experiments/search", params={"max_results": 1},
                       headers={"Accept": BROWSER_ACCEPT}, timeout=30)
    assert api.status_code == 401 and api.headers["Content-Type"].startswith("application/json")
