"""Azure ML's artifact service (``/artifact/v2.0``) for uploads that belong to no run.

azureml-mlflow uses it with origin ``LocalUpload`` when a model is registered from a local folder
(``mlflow.register_model("file:///dir", name)``, ``create_model_version(source="file:///dir")``:
``AzureMLflowModelRegistry._create_artifacts``, container ``<yymmddTHHMMSS>-<8 hex>``, then the
version's source is ``azureml://artifacts/LocalUpload/<container>/<folder name>``) and for the v1
deployment client's entry script (``_mms/mms_client._upload_dependency``, container ``<8 hex>``).
Its ``LocalArtifactClient`` calls, under ``/artifact/v2.0/<scope>/artifacts/<origin>/<container>``:

* ``POST .../batch/metadata`` ``{"paths": [{"path"}]}`` -> per path an artifact and a write SAS
  URL (``artifactContentInformation``), or a per-path error for a path that escapes; the
  container comes into being with its first artifact (the client never creates it first);
* ``GET ...`` (``?path=<prefix>``, ``continuationToken``) -> ``{"value", "nextLink"}``;
* ``GET .../contentinfo?path=`` -> read SAS URL (404 if absent); ``GET .../metadata?path=``.

Same answers as run history (run_history.py). Files live at ``<artifact root>/LocalUpload/
<container>/<path>``: blob ``LocalUpload/<container>/<path>`` of the workspace's container and
``mlflow-artifacts:/LocalUpload/<container>/<path>`` for vanilla clients (artifact_views.py maps
the source both ways), so every client reads the same bytes.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlencode

from flask import Flask, jsonify, request

from emulator.services.azureml import hosts
from emulator.services.azureml.run_history import (
    PAGE_SIZE,
    HistoryError,
    batch_answer,
    existing_artifact,
    files_under,
)
from emulator.services.azureml.scope import scope_problem
from emulator.services.blob import sas as blob_sas
from emulator.services.blob.service import CONTAINER
from emulator.settings import ServerConfig

PREFIX = ("/artifact/v2.0/subscriptions/<sub>/resourceGroups/<rg>/providers/"
          "Microsoft.MachineLearningServices/workspaces/<ws>/artifacts/<origin>/<container>")
ORIGIN = "LocalUpload"
# What the clients generate (timestamp-uuid, uuid) and a little more; never "." or "..".
_CONTAINER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")


def install(app: Flask, config: ServerConfig) -> None:
    root = (Path(config.state_dir) / "artifacts").resolve()
    account = hosts.storage_account(config)

    def container_dir(sub, rg, ws, origin, container) -> str:
        """The container's folder, relative to the artifact root (``LocalUpload/<container>``)."""
        problem = scope_problem(config, sub, rg, ws)
        if problem:
            raise HistoryError(problem[0], problem[1], 404)
        if origin != ORIGIN:
            # fidelity: Azure ML local uploads -- only origin LocalUpload is served here
            raise HistoryError("NotFound", f"Origin {origin!r} is not served by this workspace: artifacts "
                               f"of runs are under /history/v1.0/.../runs/<run>/artifacts.", 404)
        if not _CONTAINER_NAME.match(container):
            raise HistoryError("ValidationError", f"The container name {container!r} is not valid.", 400)
        return f"{ORIGIN}/{container}"

    def artifact(container: str, path: str, blob: str | None = None) -> dict:
        info = {"artifactId": f"{ORIGIN}/{container}/{path}", "origin": ORIGIN,
                "container": container, "path": path}
        if blob is not None:
            stat = (root / blob).stat()
            info["etag"] = f'"{stat.st_mtime_ns:x}"'
            info["createdTime"] = datetime.fromtimestamp(stat.st_mtime, timezone.utc).isoformat()
        return info

    def content(container: str, path: str, blob: str, permissions: str) -> dict:
        query = blob_sas.sign(config.token, account, CONTAINER, blob, permissions)
        url = blob_sas.blob_url(hosts.blob_base_url(config, request), CONTAINER, blob, query)
        return {"contentUri": url, "origin": ORIGIN, "container": container, "path": path}

    @app.route(PREFIX, methods=["GET"], endpoint="local_uploads_list")
    def _list_in_container(sub, rg, ws, origin, container):
        base = container_dir(sub, rg, ws, origin, container)
        prefix = (request.args.get("path") or "").strip("/")
        try:
            offset = int(request.args.get("continuationToken") or 0)
        except ValueError:
            raise HistoryError("ValidationError", "continuationToken is not valid.", 400) from None
        # fidelity: Azure ML local uploads -- a container with no artifacts lists empty
        paths = [p for p in files_under(root / base) if not prefix or p == prefix or p.startswith(prefix + "/")]
        chunk = paths[offset: offset + PAGE_SIZE]
        more = offset + PAGE_SIZE < len(paths)
        args = {k: v for k, v in request.args.items() if k != "continuationToken"}
        next_link = None
        if more:
            args["continuationToken"] = str(offset + PAGE_SIZE)
            next_link = f"{request.base_url}?{urlencode(args)}"
        return jsonify({"value": [artifact(container, p, f"{base}/{p}") for p in chunk],
                        "continuationToken": args.get("continuationToken") if more else None,
                        "nextLink": next_link})

    def existing(sub, rg, ws, origin, container) -> tuple[str, str]:
        base = container_dir(sub, rg, ws, origin, container)
        # fidelity: Azure ML local uploads -- contentinfo of an unknown artifact or container
        return existing_artifact(root, base, f" in container {container}")

    @app.route(PREFIX + "/contentinfo", methods=["GET"], endpoint="local_uploads_contentinfo")
    def _content_info(sub, rg, ws, origin, container):
        path, blob = existing(sub, rg, ws, origin, container)
        return jsonify(content(container, path, blob, blob_sas.READ))

    @app.route(PREFIX + "/metadata", methods=["GET"], endpoint="local_uploads_metadata")
    def _metadata(sub, rg, ws, origin, container):
        path, blob = existing(sub, rg, ws, origin, container)
        return jsonify(artifact(container, path, blob))

    @app.route(PREFIX + "/batch/metadata", methods=["POST"], endpoint="local_uploads_batch_create")
    def _batch_create_empty_artifacts(sub, rg, ws, origin, container):
        base = container_dir(sub, rg, ws, origin, container)
        # fidelity: Azure ML local uploads -- per-path errors in the batch answer
        return jsonify(batch_answer(base, container, "container", artifact, content))
