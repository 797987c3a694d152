"""The two MLflow UIs in a real headless browser (Debian's Chromium through selenium).

What a user does: open the `?token=` link, list runs, open a run with its metric chart and its
artifacts (a Databricks ``dbfs:/`` one, an Azure ML ``mlflow-artifacts:/`` one), the registered
models; and the security promises as a browser keeps them (docs/pages/security.md): a page on
another local port cannot use the login cookie, and one workspace's login leaves the other's alone.
A failing test leaves a screenshot under reports/screenshots/ (tests/support/browser.py).
"""

from __future__ import annotations

import http.server
import json
import threading
from dataclasses import dataclass

import mlflow
import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from harness import mlflow_uris
from tests.support import browser as browser_support

pytestmark = pytest.mark.browser
pytest_plugins = ["pytester"]

LOSS = [1.0, 0.5, 0.25, 0.125]
MODEL = "browser-model"
# What the UI asks for that stock `mlflow server` does not answer from its Flask app either: the
# Assistant (served by its FastAPI app: a local coding agent, not run here) and the current user
# (the basic-auth app's route). The UI shows the Assistant's welcome panel without them.
# fidelity: The MLflow UIs in a browser
KNOWN_UNANSWERED = ("/ajax-api/3.0/mlflow/assistant/", "/ajax-api/2.0/mlflow/users/current")


@dataclass(frozen=True)
class Seeded:
    """One workspace as the browser sees it, with what the real client logged into it."""

    role: str
    ui: str  # where its UI lives: the host for Databricks, the tracking scope path for Azure ML
    token: str
    experiment_name: str
    experiment_id: str
    run_id: str
    run_name: str
    artifact_uri: str
    note: str  # the text of the run's artifact notes/hello.txt

    @property
    def login(self) -> str:
        return f"{self.ui}/?token={self.token}"

    def page(self, fragment: str) -> str:
        return f"{self.ui}/#/{fragment}"


class _Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input: list[str]) -> list[str]:
        return model_input


def _seed(role: str, ws, ui: str, tracking_uri: str, experiment_name: str) -> Seeded:
    """A run with a metric history, a text artifact and a model, registered, all by the real client."""
    with pytest.MonkeyPatch.context() as mp, mlflow_uris.using(tracking_uri, tracking_uri):
        for key, value in ws.env.items():
            mp.setenv(key, value)
        experiment_id = mlflow.create_experiment(experiment_name)
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"{role}-run") as run:
            for step, value in enumerate(LOSS):
                mlflow.log_metric("loss", value, step=step)
            note = f"hello from the {role} run"
            mlflow.log_text(note, "notes/hello.txt")
            # No requirement inference: it would pip-inspect this venv, slowly, for nothing shown.
            model = mlflow.pyfunc.log_model(name="model", python_model=_Echo(), pip_requirements=[])
        mlflow.register_model(model.model_uri, MODEL)
    return Seeded(role, ui, ws.token, experiment_name, experiment_id, run.info.run_id, f"{role}-run",
                  run.info.artifact_uri, note)


@pytest.fixture(scope="module")
def seeded(emulator) -> dict[str, Seeded]:
    db, aml = emulator.databricks, emulator.azureml
    return {
        "databricks": _seed("databricks", db, db.url, "databricks", f"/Users/{db.user}/browser"),
        "azureml": _seed("azureml", aml, aml.tracking_uri, aml.tracking_uri, "browser-aml"),
    }


@pytest.fixture(params=["databricks", "azureml"])
def ws(request, seeded) -> Seeded:
    return seeded[request.param]


@pytest.fixture(scope="module")
def chromium():
    driver = browser_support.headless_chromium()
    yield driver
    driver.quit()


@pytest.fixture
def browser(chromium):
    """The module's browser with no cookies: every test logs in itself."""
    chromium.execute_cdp_cmd("Network.clearBrowserCookies", {})
    chromium.get_log("browser")  # and no console messages of earlier tests (reading empties it)
    return chromium


def body_text(driver) -> str:
    return driver.find_element(By.TAG_NAME, "body").text


def wait_for_text(driver, *texts: str) -> None:
    WebDriverWait(driver, browser_support.WAIT_SECONDS).until(
        lambda d: all(t in body_text(d) for t in texts), message=f"page never showed {texts!r}")


def click_text(driver, text: str) -> None:
    """Click the element whose own text is ``text`` once it is there."""
    xpath = f"//*[normalize-space(text())={text!r}]"
    element = WebDriverWait(driver, browser_support.WAIT_SECONDS).until(
        lambda d: next((e for e in d.find_elements(By.XPATH, xpath) if e.is_displayed()), None),
        message=f"nothing to click showing {text!r}")
    element.click()


def console_errors(driver) -> list[str]:
    """The page's console errors (failed loads included) since the last call, but the known ones."""
    return [e["message"] for e in driver.get_log("browser")
            if e["level"] == "SEVERE" and not any(path in e["message"] for path in KNOWN_UNANSWERED)]


def log_in(driver, ws: Seeded) -> None:
    driver.get(ws.login)
    wait_for_text(driver, ws.experiment_name)  # the home page's recent experiments: data, not just the shell


def test_the_token_link_logs_the_ui_in_and_leaves_the_address_bar(browser, ws):
    log_in(browser, ws)
    # The redirect dropped the token: the address bar and history never keep it.
    assert browser.current_url == f"{ws.ui}/"
    login_cookies = [c for c in browser.get_cookies() if c["name"].startswith("emulator_token_")]
    assert len(login_cookies) == 1 and login_cookies[0]["httpOnly"] is True
    assert login_cookies[0]["value"] != ws.token
    assert browser.execute_script("return document.cookie") == ""  # HttpOnly: page scripts cannot read it


def test_without_logging_in_the_ui_shows_no_data(browser, ws):
    browser.get(ws.page(f"experiments/{ws.experiment_id}/runs"))
    wait_for_text(browser, "No access token was provided")
    assert ws.run_name not in body_text(browser)


def test_the_runs_list_shows_the_logged_run(browser, ws):
    log_in(browser, ws)
    browser.get(ws.page(f"experiments/{ws.experiment_id}/runs"))
    wait_for_text(browser, ws.run_name, "1 matching run")
    assert console_errors(browser) == []


def test_the_run_page_charts_the_metric_history(browser, ws):
    log_in(browser, ws)
    browser.get(ws.page(f"experiments/{ws.experiment_id}/runs/{ws.run_id}/model-metrics"))
    wait_for_text(browser, ws.run_name, "loss")
    # The chart is a Plotly plot: its points (the traces a user can hover) are the run's whole
    # logged history, step by step.
    drawn = WebDriverWait(browser, browser_support.WAIT_SECONDS).until(
        lambda d: d.execute_script(
            "const plot = document.querySelector('.js-plotly-plot');"
            "return plot && plot.data && plot.data.length ? plot.data.filter(t => t.hoverinfo !== 'skip')"
            "  .map(t => [t.name, t.x, t.y]) : null;"),
        message="no metric chart was drawn")
    assert drawn == [[ws.run_name, list(range(len(LOSS))), LOSS]]
    assert console_errors(browser) == []


def test_the_run_page_shows_the_artifact(browser, ws):
    assert ws.artifact_uri.startswith({"databricks": "dbfs:/", "azureml": "mlflow-artifacts:/"}[ws.role])
    log_in(browser, ws)
    browser.get(ws.page(f"experiments/{ws.experiment_id}/runs/{ws.run_id}/artifacts"))
    click_text(browser, "notes")
    click_text(browser, "hello.txt")
    wait_for_text(browser, ws.note)
    assert console_errors(browser) == []


def test_the_registered_models_page(browser, ws):
    log_in(browser, ws)
    browser.get(ws.page("models"))
    wait_for_text(browser, MODEL, "Version 1")
    # The model's version page (by address: the list shows a promotion dialog over its links)
    # names the run the version came from.
    browser.get(ws.page(f"models/{MODEL}/versions/1"))
    wait_for_text(browser, "Version 1", ws.run_name)
    assert console_errors(browser) == []


# --- the security promises, as a browser keeps them ---------------------------------------------

class _OtherApp(http.server.BaseHTTPRequestHandler):
    """Any other web app on a local port: same-site with the workspaces (SameSite ignores ports)."""

    def do_GET(self):
        page = b"<!doctype html><title>another local app</title><body>another local app</body>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def other_local_page():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _OtherApp)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


# A script's fetch with the page's cookies; what it could read of the answer, or why it could not.
FETCH = """
const [url, init, done] = arguments;
fetch(url, {credentials: 'include', ...init}).then(
  async answer => done({status: answer.status, type: answer.type,
                        body: answer.type === 'opaque' ? null : await answer.text()}),
  error => done({error: String(error)}));
"""
EXPERIMENT_0 = "/ajax-api/2.0/mlflow/experiments/get?experiment_id=0"


def page_fetch(driver, url: str, **init) -> dict:
    driver.set_script_timeout(browser_support.WAIT_SECONDS)
    return driver.execute_async_script(FETCH, url, init)


def experiment_names(ws: Seeded) -> list[str]:
    answer = requests.post(f"{ws.ui}/api/2.0/mlflow/experiments/search", json={"max_results": 1000},
                           headers={"Authorization": f"Bearer {ws.token}"}, timeout=60)
    assert answer.status_code == 200, answer.text
    return [e["name"] for e in answer.json()["experiments"]]


def test_a_page_on_another_local_port_cannot_use_the_login_cookie(browser, ws, emulator, other_local_page):
    handle = getattr(emulator, ws.role)
    handle.journal(True)
    log_in(browser, ws)
    # The control: from the workspace's own page the cookie reads the API.
    own = page_fetch(browser, f"{ws.ui}{EXPERIMENT_0}")
    assert own.get("status") == 200 and json.loads(own["body"])["experiment"]["name"] == "Default", own
    browser.get(other_local_page)
    WebDriverWait(browser, browser_support.WAIT_SECONDS).until(lambda d: d.title == "another local app")
    since = max([e["seq"] for e in handle.requests()], default=0)  # the UI's own page is gone
    # The same read from another local port: the page gets nothing (no CORS grant).
    read = page_fetch(browser, f"{ws.ui}{EXPERIMENT_0}")
    assert set(read) == {"error"}, read
    # A "simple" cross-origin POST (no preflight; its answer unreadable) that would create an experiment.
    planted = f"planted-by-another-page-{ws.role}"
    write = page_fetch(browser, f"{ws.ui}/ajax-api/2.0/mlflow/experiments/create", method="POST",
                       mode="no-cors", headers={"Content-Type": "text/plain"}, body=json.dumps({"name": planted}))
    assert write == {"status": 0, "type": "opaque", "body": None}, write
    # What the workspace saw: the browser did send the cookie (same site), and both were refused.
    calls = [(e["method"], e["path"].rsplit("/", 1)[-1], e["auth"], e["status"])
             for e in handle.requests(since=since, path="/ajax-api/2.0/mlflow/experiments/")]
    assert calls == [("GET", "get", "cookie", 403), ("POST", "create", "cookie", 403)], calls
    names = experiment_names(ws)
    assert planted not in names and ws.experiment_name in names


def test_logging_into_one_workspace_keeps_the_other_logged_in(browser, seeded):
    db, aml = seeded["databricks"], seeded["azureml"]
    log_in(browser, db)
    log_in(browser, aml)  # the same browser: cookies for 127.0.0.1 go to every port
    for ws in (db, aml, db):
        browser.get(ws.page(f"experiments/{ws.experiment_id}/runs"))
        wait_for_text(browser, ws.run_name, "1 matching run")
    login_cookies = {c["name"]: c["value"] for c in browser.get_cookies() if c["name"].startswith("emulator_token_")}
    assert len(login_cookies) == 2 and not {db.token, aml.token} & set(login_cookies.values())


# --- the screenshots a failing browser test leaves ----------------------------------------------

def test_a_failing_browser_test_saves_a_screenshot_and_names_it(pytester):
    browser_support.require_browser()
    pytester.makeconftest("""
        import pytest
        from tests.support import browser as browser_support
        from tests.support.browser import pytest_runtest_makereport  # noqa: F401

        @pytest.fixture
        def browser():
            driver = browser_support.headless_chromium()
            yield driver
            driver.quit()
    """)
    pytester.makepyfile(test_page="""
        def test_the_page_says_goodbye(browser):
            browser.get("data:text/html,<h1>hello</h1>")
            assert "goodbye" in browser.page_source
    """)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    shots = list((pytester.path / browser_support.SCREENSHOT_DIR).glob("*.png"))
    assert [s.name for s in shots] == ["test_page.py_test_the_page_says_goodbye-call.png"]
    assert shots[0].read_bytes().startswith(b"\x89PNG")
    result.stdout.fnmatch_lines(["*browser screenshot*", f"{shots[0]} (page: data:text/html,*"])


def test_without_chromium_the_tests_skip_but_fail_under_make_test(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no chromium, no chromedriver
    monkeypatch.delenv("EMULATOR_REQUIRE_DOCKER", raising=False)
    with pytest.raises(pytest.skip.Exception, match="chromium"):
        browser_support.require_browser()
    monkeypatch.setenv("EMULATOR_REQUIRE_DOCKER", "1")  # what `make test` sets
    with pytest.raises(pytest.fail.Exception, match="apt-get install chromium chromium-driver"):
        browser_support.require_browser()
