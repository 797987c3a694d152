"""A real headless Chromium for the UI tests: Debian's ``chromium`` and ``chromium-driver``, driven by
selenium, plus screenshots of the page when a test that used it fails.

Nothing is downloaded: the driver and browser are named explicitly (Service/binary_location), so
selenium's driver manager is never needed, and SE_OFFLINE forbids it to fetch anything anyway.
Without the packages the tests skip, unless EMULATOR_REQUIRE_DOCKER=1 (`make test` sets it, and
`make test` installs them: .ci/system-deps.sh browser): then they fail, so CI cannot pass by skipping.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

BINARIES = {"browser": ("chromium",), "driver": ("chromedriver",)}
# The SPA loads lazily and the machine is shared: generous, condition-based waits only.
WAIT_SECONDS = 60
FIXTURE_NAME = "browser"  # the fixture whose driver a failing test's screenshot is taken from
SCREENSHOT_DIR = Path("reports") / "screenshots"


def binaries() -> dict[str, str | None]:
    return {role: next(filter(None, map(shutil.which, names)), None) for role, names in BINARIES.items()}


def require_browser() -> dict[str, str]:
    """The browser and driver paths; skip without them (fail under `make test`)."""
    found = binaries()
    missing = [BINARIES[role][0] for role, path in found.items() if not path]
    if missing:
        why = f"no {' / '.join(missing)} on PATH (Debian: apt-get install chromium chromium-driver)"
        if os.environ.get("EMULATOR_REQUIRE_DOCKER") == "1":
            pytest.fail(why)
        pytest.skip(why)
    return found  # type: ignore[return-value]


def headless_chromium(size: tuple[int, int] = (1400, 1000)):
    """A fresh headless Chromium session (its own profile: no cookies)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    paths = require_browser()
    os.environ.setdefault("SE_OFFLINE", "true")  # selenium-manager, should anything call it: no downloads
    options = webdriver.ChromeOptions()
    options.binary_location = paths["browser"]
    # Root in a container has no user namespaces for the sandbox, and a small /dev/shm.
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--no-proxy-server",
                 "--disable-gpu", f"--window-size={size[0]},{size[1]}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=paths["driver"]), options=options)


def screenshot_on_failure(item: pytest.Item, report: pytest.TestReport) -> None:
    """A failed test that used the browser: save what the page showed and name the file in the report."""
    driver = getattr(item, "funcargs", {}).get(FIXTURE_NAME)
    if not report.failed or driver is None or not hasattr(driver, "save_screenshot"):
        return
    directory = item.config.rootpath / SCREENSHOT_DIR
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / (re.sub(r"[^A-Za-z0-9_.-]+", "_", item.nodeid).strip("_") + f"-{report.when}.png")
    try:
        driver.save_screenshot(str(path))
        where = re.sub(r"token=[^&#]*", "token=REDACTED", driver.current_url)  # a login link's token
    except Exception as exc:  # a dead browser: say so instead of hiding the test's own failure
        report.sections.append(("browser screenshot", f"no screenshot: {type(exc).__name__}: {exc}"))
        return
    report.sections.append(("browser screenshot", f"{path} (page: {where})"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """The hook a conftest imports to get screenshot_on_failure for its tests."""
    report = yield
    screenshot_on_failure(item, report)
    return report
