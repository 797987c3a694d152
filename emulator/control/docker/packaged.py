"""Docker mode's files wherever the emulator runs from: a source checkout or an installed wheel.

A checkout has ``Dockerfile``, ``docker-compose.yml`` and ``pyproject.toml`` at its top (the single
source); setup.py copies them into the wheel as ``emulator/control/docker/files/``. From an installed
wheel the image is built from a wheel of the installed distribution itself (``write_wheel``), so
no checkout is needed and the image runs exactly what is installed.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import zipfile
from pathlib import Path

from emulator.control.user_cache import CACHE_ENV, DISTRIBUTION, cache_root  # noqa: F401  (re-exported)

SHIPPED = ("Dockerfile", "docker-compose.yml", "pyproject.toml")  # setup.py copies these
FILES = Path(__file__).resolve().parent / "files"
# Written by the installer, not part of what was built: left out of the rebuilt wheel.
_INSTALLER_FILES = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}
_EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed zip timestamps: the same files give the same wheel


class PackagingError(RuntimeError):
    """Docker mode's files or the installed distribution cannot be found."""


def checkout_root() -> Path | None:
    """The source checkout this module runs from (also an editable install), else None."""
    root = Path(__file__).resolve().parents[3]
    return root if all((root / name).is_file() for name in SHIPPED) else None


def shipped_file(name: str) -> Path:
    """``name`` (one of SHIPPED) from the checkout, else from the installed package."""
    root = checkout_root()
    path = (root or FILES) / name
    if not path.is_file():
        raise PackagingError(f"{name} is neither in a source checkout nor in the installed package "
                             f"({FILES}); reinstall {DISTRIBUTION} from a wheel built by its setup.py")
    return path




def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def write_wheel(dest: Path) -> tuple[Path, str]:
    """Rebuild the installed distribution's wheel into ``dest``; returns it and a key of its contents.

    Takes the files the installer recorded (RECORD) that live beside the packages - the packages and
    the .dist-info - and writes them back with a fresh RECORD: the wheel pip installed, minus
    bytecode and installer bookkeeping.
    """
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise PackagingError(f"{DISTRIBUTION} is not installed and this is no source checkout") from None
    files = list(dist.files or [])
    # e.g. mlflow_azure_emulator-0.1.0.dist-info
    info_dir = next((f.parts[0] for f in files if f.parts[0].endswith(".dist-info") and f.name == "METADATA"), "")
    entries = []
    for item in files:
        parts = item.parts
        if parts[0] == ".." or "__pycache__" in parts or item.suffix == ".pyc":
            continue  # console scripts (the installer makes them) and bytecode
        if parts[0] == info_dir and parts[-1] in _INSTALLER_FILES:
            continue
        entries.append((item.as_posix(), Path(dist.locate_file(item)).read_bytes()))
    if not any(name.startswith("emulator/") for name, _ in entries):
        raise PackagingError(f"{DISTRIBUTION} is installed without its files (an editable install "
                             "outside its checkout?); install it from a wheel")
    entries.sort()
    tag = next((line.split(":", 1)[1].strip() for line in dist.read_text("WHEEL").splitlines()
                if line.startswith("Tag:")), "py3-none-any")
    name = dist.metadata["Name"].replace("-", "_")
    wheel = dest / f"{name}-{dist.version}-{tag}.whl"
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("*.whl"):
        old.unlink()
    digest = hashlib.sha256()
    record = [f"{arc},{_record_hash(data)},{len(data)}" for arc, data in entries]
    entries.append((f"{info_dir}/RECORD", ("\n".join([*record, f"{info_dir}/RECORD,,"]) + "\n").encode()))
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        for arc, data in entries:
            info = zipfile.ZipInfo(arc, date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
            digest.update(arc.encode() + b"\0" + data + b"\0")
    return wheel, digest.hexdigest()[:16]
