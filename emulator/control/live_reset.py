"""``emulator reset --live`` and the pytest plugin's per-test reset: the client side of
``POST /__emulator/reset`` (emulator.pipeline.reset answers it)."""

from __future__ import annotations


def request_reset(url: str, token: str, timeout: float = 120.0) -> dict:
    """Client side (``emulator reset --live``, the pytest plugin): reset the workspace at ``url``."""
    import requests

    answer = requests.post(f"{url}/__emulator/reset", json={}, timeout=timeout,
                           headers={"Authorization": f"Bearer {token}"})
    if answer.status_code != 200:
        raise RuntimeError(f"reset of {url} failed ({answer.status_code}): {answer.text[:300]}")
    return answer.json()
