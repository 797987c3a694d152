"""The state directory: one private folder per workspace plus the shared config (tokens, ports).

Layout::

    <state>/config.json          tokens and identities (mode 0600)
    <state>/<role>/mlflow.db     the MLflow backend store (SQLite)
    <state>/<role>/artifacts/    the artifact root
    <state>/<role>/server.json   the running server's PID and ports (local mode)
    <state>/<role>/server.log    its output
    <state>/<role>/ports.json    the ports it last listened on (`emulator start` uses them again)
    <state>/deployment.json      how it runs: local processes or a Compose project (mode 0600)
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import shutil
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path

from emulator import settings


def make_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) readable by the owner only; tighten it if it exists."""
    path.mkdir(parents=True, exist_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        path.chmod(0o700)
    return path


class StateDir:
    def __init__(self, root: str | os.PathLike | None = None):
        root = root or os.environ.get(settings.STATE_DIR_ENV) or settings.DEFAULT_STATE_DIR
        self.root = Path(root).resolve()

    def role_dir(self, role: str) -> Path:
        if role not in settings.ROLES:
            raise ValueError(f"unknown workspace {role!r}; expected one of {settings.ROLES}")
        return self.root / role

    @property
    def config_path(self) -> Path:
        return self.root / "config.json"

    def ensure(self) -> None:
        make_private_dir(self.root)
        for role in settings.ROLES:
            make_private_dir(self.role_dir(role))

    def load_config(self) -> dict:
        try:
            return json.loads(self.config_path.read_text())
        except FileNotFoundError:
            return {}

    def save_config(self, config: dict) -> None:
        self.ensure()
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".config-", suffix=".tmp")  # mode 0600
        with os.fdopen(fd, "w") as fh:
            json.dump(config, fh, indent=2, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.config_path)

    @contextmanager
    def _config_lock(self):
        # The CLI and both server processes may read-modify-write the config at once; without the
        # lock two of them could generate different tokens for the same workspace.
        self.ensure()
        fd = os.open(self.root / ".config.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def config(self) -> dict:
        """Tokens and identities, created once per state dir; environment variables win."""
        with self._config_lock():
            return self._update_config()

    def _update_config(self) -> dict:
        config = self.load_config()
        changed = False
        for role in settings.ROLES:
            env_token = os.environ.get(settings.TOKEN_ENV[role])
            key = f"{role}_token"
            if env_token and config.get(key) != env_token:
                config[key] = env_token
                changed = True
            elif not config.get(key):
                prefix = "dapi" if role == "databricks" else "aml"
                config[key] = f"{prefix}{secrets.token_hex(16)}"
                changed = True
        wanted = {"databricks_user": os.environ.get(settings.DATABRICKS_USER_ENV)}
        wanted.update({k: os.environ.get(env) for k, env in settings.AZUREML_ENV.items()})
        defaults = {"databricks_user": settings.DEFAULT_DATABRICKS_USER, **settings.AZUREML_DEFAULTS}
        for key, value in wanted.items():
            value = value or config.get(key) or defaults[key]
            if config.get(key) != value:
                config[key] = value
                changed = True
        if changed:
            self.save_config(config)
        return config

    def generated_secret(self, key: str) -> str:
        """``config[key]``, a random hex secret made on first use and kept (e.g. a database password)."""
        with self._config_lock():
            config = self.load_config()
            if not config.get(key):
                config[key] = secrets.token_hex(24)
                self.save_config(config)
            return config[key]

    def deployment(self) -> dict:
        """How this state dir's workspaces run: ``{"mode": "local"}`` or Compose's URLs and project."""
        try:
            return json.loads((self.root / "deployment.json").read_text())
        except (FileNotFoundError, ValueError):
            return {"mode": "local"}

    def record_deployment(self, mode: str, **extra) -> None:
        self.ensure()
        path = self.root / "deployment.json"
        path.write_text(json.dumps({"mode": mode, **extra}))
        path.chmod(0o600)

    def wipe(self) -> None:
        """Delete everything, like deleting the resource group in the seed's clean-up."""
        if self.root.exists():
            shutil.rmtree(self.root)
