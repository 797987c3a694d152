"""A full disk is one answer on every route: 503 TEMPORARILY_UNAVAILABLE, nothing half-written.

A 1 MiB tmpfs is mounted over one storage folder of a running workspace (needs root; skipped
otherwise), and a 2 MiB file is uploaded into it through each API.
"""

import subprocess
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests

TWO_MIB = b"f" * (2 * 1024**2)


@pytest.fixture
def full_folder():
    mounted = []

    def mount(folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(folder)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs here: {proc.stderr.strip()}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", str(folder)], check=True)


def _assert_disk_full(answer: requests.Response) -> None:
    assert answer.status_code == 503, answer.text[:300]
    body = answer.json()
    assert body["error_code"] == "TEMPORARILY_UNAVAILABLE"
    assert "disk is full" in body["message"]


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*") if p.is_file()]


def test_files_api_upload_on_a_full_disk_is_503(emulator, full_folder):
    ws = emulator.databricks
    folder = full_folder(Path(emulator.state.root) / "databricks" / "volumes" / "full")
    answer = requests.put(f"{ws.url}/api/2.0/fs/files/Volumes/full/big.bin", data=TWO_MIB, timeout=60,
                          headers={"Authorization": f"Bearer {ws.token}"})
    _assert_disk_full(answer)
    assert _leftovers(folder) == []  # the partial temp file is removed


def test_dbfs_upload_on_a_full_disk_is_503(emulator, full_folder):
    ws = emulator.databricks
    folder = full_folder(Path(emulator.state.root) / "databricks" / "dbfs" / "full")
    answer = requests.post(f"{ws.url}/dbfs/full/big.bin", data=TWO_MIB, timeout=60,
                           headers={"Authorization": f"Bearer {ws.token}"})
    _assert_disk_full(answer)
    assert _leftovers(folder) == []


def test_azureml_artifact_upload_on_a_full_disk_is_503(emulator, full_folder):
    aml = emulator.azureml
    full_folder(Path(emulator.state.root) / "azureml" / "artifacts" / "full")
    prefix = urlparse(aml.tracking_uri).path
    answer = requests.put(f"{aml.url}{prefix}/api/2.0/mlflow-artifacts/artifacts/full/big.bin", data=TWO_MIB,
                          timeout=60, headers={"Authorization": f"Bearer {aml.token}"})
    _assert_disk_full(answer)


def test_small_writes_still_work_after_a_full_disk(emulator):
    ws = emulator.databricks
    answer = requests.put(f"{ws.url}/api/2.0/fs/files/Volumes/ok/small.bin", data=b"ok", timeout=60,
                          headers={"Authorization": f"Bearer {ws.token}"})
    assert answer.status_code == 204
