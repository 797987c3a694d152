"""``emulator reset --live`` and the pytest plugin's per-test reset: the client side of
``POST /__emulator/reset`` (emulator.pipeline.reset answers it)."""

from __future__ import annotations


def holds_data(url: str, token: str, timeout: float = 120.0) -> bool:
    """Whether the workspace at ``url`` holds data a reset would discard (runs, models, Unity Catalog, files...)."""
    import requests

    answer = requests.get(f"{url}/__emulator/reset", timeout=timeout, headers={"Authorization": f"Bearer {token}"})
    if answer.status_code != 200:
        raise RuntimeError(f"cannot ask {url} what it holds ({answer.status_code}): {answer.text[:300]}")
    return bool(answer.json()["holds_data"])


def request_reset(url: str, token: str, timeout: float = 120.0, http=None) -> dict:
    """Client side (``emulator reset --live``, the pytest plugin): reset the workspace at ``url``.
    ``http``: a requests.Session to send it with (the plugin keeps one open between tests)."""
    import requests

    answer = (http or requests).post(f"{url}/__emulator/reset", json={}, timeout=timeout,
                           headers={"Authorization": f"Bearer {token}"})
    if answer.status_code != 200:
        raise RuntimeError(f"reset of {url} failed ({answer.status_code}): {answer.text[:300]}")
    return answer.json()
