"""Managed online endpoints and deployments through ARM, as azure-ai-ml's client calls them.

``.../workspaces/<ws>/onlineEndpoints[/<e>]`` and ``.../onlineEndpoints/<e>/deployments[/<d>]``:
PUT (create or update, long-running: ``Creating`` -> ``Succeeded`` / ``Failed`` with
``Azure-AsyncOperation`` polling), GET, LIST, PATCH (endpoint), DELETE (long-running), plus
``listKeys``, ``regenerateKeys``, ``token`` and the deployment's ``getLogs``.

A deployment of a registered MLflow model (``properties.model`` = the version's ARM id or
``azureml:<name>:<version>``, no scoring script) is served by its own child process
(``deployment_pool``); a model that fails to load ends ``Failed`` with its error in the
deployment logs, and the endpoint keeps serving its other deployments. Endpoints and deployments
are kept in ``<state>/online-endpoints/state.json``; after a restart the ``Succeeded`` ones are
started again.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import secrets
import threading
import time
from pathlib import Path

from flask import Flask, jsonify, request

from emulator.services.azureml import arm_models, arm_paging, scoring
from emulator.services.azureml.arm_resources import (
    PROVIDER,
    ArmError,
    arm_route,
    json_body,
    now_iso,
    system_data,
    workspace_id,
)
from emulator.services.azureml.deployment_pool import (
    DeploymentFailed,
    DeploymentPool,
    tail,
)
from emulator.services.azureml.operations import Operations
from emulator.settings import ServerConfig, model_envs_dir

_logger = logging.getLogger(__name__)

# fidelity: Online endpoints - names
_NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]{1,30}[a-zA-Z0-9]$")
AUTH_MODES = {"key": "Key", "amltoken": "AMLToken", "aadtoken": "AADToken"}
_MODEL_ARM_ID = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.MachineLearningServices"
    r"/workspaces/(?P<ws>[^/]+)/models/(?P<name>[^/]+)/versions/(?P<version>[^/]+)$", re.IGNORECASE)
_MODEL_SHORT = re.compile(r"^azureml:(?P<name>[^:@/]+)(?::(?P<version>[^:@/]+)|@(?P<label>latest))$")
STATE_DIR = "online-endpoints"
SUPERVISE_INTERVAL_S = 1.0


def _check_name(kind: str, name: str) -> None:
    if not _NAME.match(name):
        raise ArmError("BadArgument", f"Invalid {kind} name '{name}': it must be 3-32 characters, start with a "
                       "letter, end with a letter or digit, and contain only letters, digits and '-'.", 400)


class EndpointStore:
    """Endpoints and their deployments, persisted as one JSON document."""

    def __init__(self, path: Path):
        self.path = path
        self.lock = threading.RLock()
        try:
            self.data = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            self.data = {"endpoints": {}}

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1))
        os.replace(tmp, self.path)

    @property
    def endpoints(self) -> dict:
        return self.data["endpoints"]

    def endpoint(self, name: str) -> dict:
        ep = self.endpoints.get(name)
        if ep is None:
            raise ArmError("ResourceNotFound", f"Online endpoint '{name}' was not found in this workspace.", 404)
        return ep

    def deployment(self, endpoint: str, name: str) -> dict:
        dep = self.endpoint(endpoint)["deployments"].get(name)
        if dep is None:
            raise ArmError("ResourceNotFound",
                           f"Deployment '{name}' was not found on online endpoint '{endpoint}'.", 404)
        return dep


class OnlineEndpoints:
    def __init__(self, config: ServerConfig):
        self.config = config
        root = Path(config.state_dir) / STATE_DIR
        self.store = EndpointStore(root / "state.json")
        self.ops = Operations(config)
        self.pool = DeploymentPool(root, self._child_env(), Path(model_envs_dir(config.state_dir)))
        self._restarting: set[tuple[str, str]] = set()
        self._restart_failures: dict[tuple[str, str], tuple[int, float]] = {}
        self._restart_lock = threading.Lock()
        threading.Thread(target=self._supervise, name="deployment-supervisor", daemon=True).start()

    # -- the model download's environment (the model's own code never gets it: deployment_pool) --
    def _child_env(self) -> dict[str, str]:
        host = self.config.host if self.config.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
        uri = f"http://{host}:{self.config.port}/mlflow/v2.0/{self.config.scope}"
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("_MLFLOW_SERVER", "DATABRICKS_", "MLFLOW_TRACKING", "MLFLOW_REGISTRY"))}
        env.update({"MLFLOW_TRACKING_URI": uri, "MLFLOW_REGISTRY_URI": uri, "MLFLOW_TRACKING_TOKEN": self.config.token})
        return env

    # -- resources -----------------------------------------------------------------------------
    def endpoint_resource(self, ep: dict) -> dict:
        base = request.host_url.rstrip("/")
        props = dict(ep["properties"])
        props.update({
            "scoringUri": f"{base}/inference/{ep['name']}/score",
            "swaggerUri": f"{base}/inference/{ep['name']}/swagger.json",
            "keys": None,  # only listKeys shows them
        })
        return {
            "id": f"{workspace_id(self.config)}/onlineEndpoints/{ep['name']}",
            "name": ep["name"],
            "type": f"{PROVIDER}/workspaces/onlineEndpoints",
            "location": ep["location"],
            "tags": ep.get("tags") or {},
            "kind": ep.get("kind"),
            "identity": ep.get("identity"),
            "properties": props,
            "systemData": system_data(ep["created"], ep.get("modified")),
        }

    def deployment_resource(self, ep_name: str, dep: dict) -> dict:
        return {
            "id": f"{workspace_id(self.config)}/onlineEndpoints/{ep_name}/deployments/{dep['name']}",
            "name": dep["name"],
            "type": f"{PROVIDER}/workspaces/onlineEndpoints/deployments",
            "location": dep["location"],
            "tags": dep.get("tags") or {},
            "kind": dep.get("kind") or "Managed",
            "sku": dep.get("sku"),
            "properties": dict(dep["properties"]),
            "systemData": system_data(dep["created"], dep.get("modified")),
        }

    # -- endpoints -----------------------------------------------------------------------------
    def put_endpoint(self, name: str, body: dict, patch: bool = False):
        _check_name("endpoint", name)
        props_in = body.get("properties") or {}
        if not isinstance(props_in, dict):
            raise ArmError("BadArgument", "'properties' must be an object.", 400)
        with self.store.lock:
            existing = self.store.endpoints.get(name)
            if patch and existing is None:
                raise ArmError("ResourceNotFound", f"Online endpoint '{name}' was not found in this workspace.", 404)
            if existing is None and not body.get("location"):
                raise ArmError("BadArgument", "'location' is required.", 400)
            ep = copy.deepcopy(existing) if existing else {
                "name": name, "created": now_iso(), "deployments": {},
                "keys": {"primaryKey": secrets.token_urlsafe(24), "secondaryKey": secrets.token_urlsafe(24)},
                "properties": {"authMode": "Key", "traffic": {}, "mirrorTraffic": {}, "publicNetworkAccess": "Enabled",
                               "properties": {}, "description": None},
            }
            mode = props_in.get("authMode", ep["properties"]["authMode"])
            if existing is None and not patch and "authMode" not in props_in:
                raise ArmError("BadArgument", "'properties.authMode' is required (Key, AMLToken or AADToken).", 400)
            if not isinstance(mode, str) or mode.lower() not in AUTH_MODES:
                raise ArmError("BadArgument", f"Invalid authMode {mode!r}: use Key, AMLToken or AADToken.", 400)
            if existing and AUTH_MODES[mode.lower()] != existing["properties"]["authMode"]:
                raise ArmError("BadArgument", "The auth mode of an existing endpoint cannot be changed.", 400)
            ep["properties"]["authMode"] = AUTH_MODES[mode.lower()]
            for key in ("description", "publicNetworkAccess", "properties", "compute"):
                if key in props_in:
                    ep["properties"][key] = props_in[key]
            if "traffic" in props_in and props_in["traffic"] is not None:
                ep["properties"]["traffic"] = self._valid_traffic(ep, props_in["traffic"], "traffic")
            if "mirrorTraffic" in props_in and props_in["mirrorTraffic"] is not None:
                ep["properties"]["mirrorTraffic"] = self._valid_traffic(ep, props_in["mirrorTraffic"], "mirrorTraffic",
                                                                        mirror=True)
            for key in ("tags", "kind", "identity"):
                if key in body:
                    ep[key] = body[key]
            ep.setdefault("identity", {"type": "SystemAssigned"})
            ep["location"] = body.get("location") or ep.get("location") or self.config.location
            ep["modified"] = now_iso()
            ep["properties"]["provisioningState"] = "Creating" if existing is None else "Updating"
            self.store.endpoints[name] = ep
            self.store.save()
            op_id = self.ops.start()
        # An endpoint has nothing to start; it is provisioned at once (the poll still sees Creating).
        threading.Timer(0.3, self._finish_endpoint, args=(name, op_id)).start()
        if existing is None:
            self.pool.warm()  # a deployment follows: have the inference servers' parent ready for it
        with self.store.lock:
            resource = self.endpoint_resource(self.store.endpoint(name))
        return resource, (201 if existing is None else 200), self.ops.headers(op_id)

    def _finish_endpoint(self, name: str, op_id: str) -> None:
        with self.store.lock:
            ep = self.store.endpoints.get(name)
            if ep is not None:
                ep["properties"]["provisioningState"] = "Succeeded"
                self.store.save()
        self.ops.finish(op_id)

    def _valid_traffic(self, ep: dict, traffic, field: str, mirror: bool = False) -> dict:
        # fidelity: Online endpoints - traffic
        if not isinstance(traffic, dict):
            raise ArmError("BadArgument", f"'{field}' must be an object of deployment name -> percent.", 400)
        out = {}
        for dep, value in traffic.items():
            if dep not in ep["deployments"]:
                raise ArmError("BadArgument", f"{field} refers to deployment '{dep}', which does not exist on "
                               f"endpoint '{ep['name']}'. Create the deployment first.", 400)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
                raise ArmError("BadArgument", f"{field} for '{dep}' must be an integer 0-100, got {value!r}.", 400)
            out[dep] = value
        total = sum(out.values())
        if not mirror and total not in (0, 100):
            raise ArmError("BadArgument", f"Traffic values must add up to 100 (or all be 0); they add up to {total}.", 400)
        if mirror and total > 50:
            raise ArmError("BadArgument", "Mirror traffic can be at most 50 percent.", 400)
        return out

    def delete_endpoint(self, name: str):
        with self.store.lock:
            ep = self.store.endpoint(name)
            ep["properties"]["provisioningState"] = "Deleting"
            op_id = self.ops.start()
            deployments = list(ep["deployments"])

        def work():
            for dep in deployments:
                self.pool.stop(name, dep)
            with self.store.lock:
                self.store.endpoints.pop(name, None)
                self.store.save()
            self.ops.finish(op_id)

        threading.Thread(target=work, daemon=True).start()
        return "", 202, self.ops.headers(op_id)

    # -- deployments ---------------------------------------------------------------------------
    def resolve_model(self, ref) -> tuple[str, str]:
        """(name, version) of the registered model a deployment names."""
        if not isinstance(ref, str) or not ref:
            raise ArmError("BadArgument", "'properties.model' is required: the registered model version's ARM id "
                           "or azureml:<name>:<version>.", 400)
        m = _MODEL_ARM_ID.match(ref)
        if m:
            from emulator.services.azureml.scope import scope_problem

            if scope_problem(self.config, m["sub"], m["rg"], m["ws"]):
                raise ArmError("BadArgument", f"Model '{ref}' is not in this workspace.", 400)
            name, version = m["name"], m["version"]
        elif (s := _MODEL_SHORT.match(ref)):
            name, version = s["name"], s["version"]
            if s["label"]:
                latest = arm_models.container(self.config, arm_models.get_registered_model(name))
                version = latest["properties"]["latestVersion"]
        else:
            raise ArmError("BadArgument", f"Invalid model reference '{ref}': use the model version's ARM id or "
                           "azureml:<name>:<version> (registries and local paths are not supported).", 400)
        try:
            mv = arm_models.get_model_version(name, version)
        except ArmError as exc:
            raise ArmError("BadArgument", f"Model '{ref}' cannot be deployed: {exc.message}", 400) from None
        return mv.name, str(mv.version)

    def put_deployment(self, ep_name: str, name: str, body: dict):
        with self.store.lock:
            self.store.endpoint(ep_name)  # the parent first: 404 before any 400 about the body
        _check_name("deployment", name)
        props_in = body.get("properties")
        if not isinstance(props_in, dict):
            raise ArmError("BadArgument", "'properties' is required.", 400)
        compute = props_in.get("endpointComputeType", "Managed")
        if str(compute).lower() != "managed":
            raise ArmError("BadArgument", f"endpointComputeType '{compute}' is not supported by the emulator; "
                           "use managed online deployments.", 400)
        if props_in.get("codeConfiguration"):
            raise ArmError("BadArgument", "Deployments with a scoring script (codeConfiguration) are not supported "
                           "by the emulator: deploy an MLflow model without one (no-code deployment).", 400)
        settings = props_in.get("requestSettings") or {}
        if not isinstance(settings, dict) or (
                settings.get("requestTimeout") is not None and not scoring.duration_seconds(settings["requestTimeout"])):
            raise ArmError("BadArgument", "requestSettings.requestTimeout must be an ISO 8601 duration such as "
                           f"PT5S, got {settings.get('requestTimeout') if isinstance(settings, dict) else settings!r}.", 400)
        model_name, model_version = self.resolve_model(props_in.get("model"))
        with self.store.lock:
            ep = self.store.endpoint(ep_name)
            existing = ep["deployments"].get(name)
            dep = copy.deepcopy(existing) if existing else {"name": name, "created": now_iso()}
            props = {"endpointComputeType": "Managed", "scaleSettings": {"scaleType": "Default"},
                     # fidelity: Online endpoints - request timeout (the real default is PT5S)
                     "requestSettings": {"requestTimeout": scoring.DEFAULT_REQUEST_TIMEOUT,
                                         "maxConcurrentRequestsPerInstance": 1},
                     "appInsightsEnabled": False, "egressPublicNetworkAccess": "Enabled",
                     "environmentVariables": {}, "properties": {}, "description": None}
            props.update({k: v for k, v in props_in.items() if v is not None})
            props["model"] = (f"{workspace_id(self.config)}/models/{model_name}/versions/{model_version}")
            props["provisioningState"] = "Creating" if existing is None else "Updating"
            dep.update({"properties": props, "location": body.get("location") or ep["location"],
                        "tags": body.get("tags") or {}, "kind": body.get("kind") or "Managed",
                        "sku": body.get("sku") or {"name": "Default", "capacity": 1},
                        "modified": now_iso(), "model_uri": f"models:/{model_name}/{model_version}"})
            dep["generation"] = dep.get("generation", 0) + 1
            ep["deployments"][name] = dep
            self.store.save()
            op_id = self.ops.start()
            resource = self.deployment_resource(ep_name, dep)
        threading.Thread(target=self._provision, args=(ep_name, name, dep["generation"], dep["model_uri"], op_id),
                         daemon=True).start()
        return resource, (201 if existing is None else 200), self.ops.headers(op_id)

    def _provision(self, ep_name: str, name: str, generation: int, model_uri: str, op_id: str | None) -> None:
        error, code = None, "DeploymentFailed"
        try:
            self.pool.start(ep_name, name, model_uri)
        except DeploymentFailed as exc:
            error, code = str(exc), exc.code
        except Exception as exc:  # never leave a deployment Creating forever
            _logger.exception("provisioning %s/%s", ep_name, name)
            error = f"{type(exc).__name__}: {exc}"
        with self.store.lock:
            dep = self.store.endpoints.get(ep_name, {}).get("deployments", {}).get(name)
            current = dep is not None and dep.get("generation") == generation
            if current:
                dep["properties"]["provisioningState"] = "Failed" if error else "Succeeded"
                dep["error"] = error
                self.store.save()
        if not current and not error:
            self.pool.stop(ep_name, name)  # deleted or replaced while loading
        if op_id:
            first_line = (error or "").splitlines()[0] if error else ""
            self.ops.finish(op_id, (code, f"{first_line} See the deployment logs (getLogs).")
                            if error else None)

    def delete_deployment(self, ep_name: str, name: str):
        with self.store.lock:
            ep = self.store.endpoint(ep_name)
            self.store.deployment(ep_name, name)
            if ep["properties"]["traffic"].get(name, 0) > 0:
                raise ArmError("BadArgument", f"Deployment '{name}' receives {ep['properties']['traffic'][name]}% of "
                               f"the traffic of endpoint '{ep_name}'; set its traffic to 0 before deleting it.", 400)
            ep["deployments"][name]["properties"]["provisioningState"] = "Deleting"
            op_id = self.ops.start()

        def work():
            self.pool.stop(ep_name, name)
            with self.store.lock:
                ep2 = self.store.endpoints.get(ep_name)
                if ep2:
                    ep2["deployments"].pop(name, None)
                    ep2["properties"].get("mirrorTraffic", {}).pop(name, None)
                    ep2["properties"]["traffic"].pop(name, None)
                    self.store.save()
            self.ops.finish(op_id)

        threading.Thread(target=work, daemon=True).start()
        return "", 202, self.ops.headers(op_id)

    # -- supervision ---------------------------------------------------------------------------
    def restart(self, ep_name: str, name: str) -> None:
        """Start a deployment's inference server again (once at a time), as the platform restarts a
        crashed container; its provisioning state stays Succeeded."""
        key = (ep_name, name)
        with self._restart_lock:
            failures, last = self._restart_failures.get(key, (0, 0.0))
            # A model that no longer loads is retried with backoff, not in a tight loop.
            if key in self._restarting or (failures and time.monotonic() - last < min(60.0, 2.0 ** failures)):
                return
            self._restarting.add(key)
        with self.store.lock:
            dep = self.store.endpoints.get(ep_name, {}).get("deployments", {}).get(name)
            model_uri = dep and dep["model_uri"]

        def work():
            try:
                if model_uri:
                    _logger.warning("inference server of %s/%s exited; restarting it", ep_name, name)
                    self.pool.start(ep_name, name, model_uri)
                with self._restart_lock:
                    self._restart_failures.pop(key, None)
            except Exception:
                _logger.exception("restarting deployment %s/%s failed", ep_name, name)
                with self._restart_lock:
                    self._restart_failures[key] = (self._restart_failures.get(key, (0, 0))[0] + 1, time.monotonic())
            finally:
                with self._restart_lock:
                    self._restarting.discard(key)

        threading.Thread(target=work, daemon=True).start()

    def restart_if_dead(self, ep_name: str, name: str, proc, grace: float = 2.0) -> None:
        """After a dropped request: the process may be exiting; restart it once it is gone."""
        try:
            proc.proc.wait(grace)
        except Exception:
            return  # still running: a dropped connection, not a crash
        self.restart(ep_name, name)

    def _supervise(self) -> None:
        while True:
            time.sleep(SUPERVISE_INTERVAL_S)
            try:
                for ep_name, name in self.pool.crashed():
                    self.restart(ep_name, name)
            except Exception:
                _logger.exception("deployment supervisor")

    def restart_after_boot(self) -> None:
        """Serve again what was serving before the workspace restarted."""
        with self.store.lock:
            todo = []
            for ep_name, ep in self.store.endpoints.items():
                if ep["properties"].get("provisioningState") != "Succeeded":
                    ep["properties"]["provisioningState"] = "Succeeded"
                for name, dep in ep["deployments"].items():
                    if dep["properties"].get("provisioningState") in ("Succeeded", "Creating", "Updating"):
                        dep["properties"]["provisioningState"] = "Updating"
                        todo.append((ep_name, name, dep["generation"], dep["model_uri"]))
            self.store.save()
        if todo:
            self.pool.warm()
        for args in todo:
            threading.Thread(target=self._provision, args=(*args, None), daemon=True).start()


def install(app: Flask, config: ServerConfig) -> OnlineEndpoints:
    from emulator.services.azureml import operations
    from emulator.services.azureml import tokens as ws_tokens

    service = OnlineEndpoints(config)
    operations.install(app, config, service.ops)

    def answer(result):
        body, status, headers = result
        return (jsonify(body) if isinstance(body, dict) else body), status, headers

    @arm_route(app, config, "/onlineEndpoints", ["GET"])
    def list_endpoints():
        with service.store.lock:
            values = [service.endpoint_resource(ep) for ep in service.store.endpoints.values()]
        wanted = request.args.get("name")
        return jsonify(arm_paging.page(values, where=lambda v: wanted in (None, v["name"])))

    @arm_route(app, config, "/onlineEndpoints/<name>", ["GET", "PUT", "PATCH", "DELETE"])
    def online_endpoint(name):
        if request.method == "PUT":
            return answer(service.put_endpoint(name, json_body()))
        if request.method == "PATCH":
            return answer(service.put_endpoint(name, json_body(), patch=True))
        if request.method == "DELETE":
            with service.store.lock:
                if name not in service.store.endpoints:
                    return "", 204
            return answer(service.delete_endpoint(name))
        with service.store.lock:
            return jsonify(service.endpoint_resource(service.store.endpoint(name)))

    @arm_route(app, config, "/onlineEndpoints/<name>/listKeys", ["POST"])
    def list_keys(name):
        with service.store.lock:
            ep = service.store.endpoint(name)
            if ep["properties"]["authMode"] != "Key":
                raise ArmError("BadArgument", f"Endpoint '{name}' uses {ep['properties']['authMode']} "
                               "authentication, not keys.", 400)
            return jsonify(dict(ep["keys"]))

    @arm_route(app, config, "/onlineEndpoints/<name>/regenerateKeys", ["POST"])
    def regenerate_keys(name):
        body = json_body()
        key_type = str(body.get("keyType", "")).lower()
        if key_type not in ("primary", "secondary"):
            raise ArmError("BadArgument", "'keyType' must be Primary or Secondary.", 400)
        value = body.get("keyValue")
        if value is not None and (not isinstance(value, str) or len(value) < 16):
            raise ArmError("BadArgument", "'keyValue' must be a string of at least 16 characters.", 400)
        with service.store.lock:
            ep = service.store.endpoint(name)
            if ep["properties"]["authMode"] != "Key":
                raise ArmError("BadArgument", f"Endpoint '{name}' does not use keys for authentication.", 400)
            ep["keys"][f"{key_type}Key"] = value or secrets.token_urlsafe(24)
            service.store.save()
            op_id = service.ops.start()
        service.ops.finish(op_id)
        return "", 202, service.ops.headers(op_id)

    @arm_route(app, config, "/onlineEndpoints/<name>/token", ["POST"])
    def endpoint_token(name):
        with service.store.lock:
            ep = service.store.endpoint(name)
            if ep["properties"]["authMode"] != "AMLToken":
                raise ArmError("BadArgument", f"Endpoint '{name}' uses {ep['properties']['authMode']} "
                               "authentication; tokens are issued for AMLToken endpoints only.", 400)
        return jsonify(scoring.issue_token(config, name))

    @arm_route(app, config, "/onlineEndpoints/<name>/deployments", ["GET"])
    def list_deployments(name):
        with service.store.lock:
            ep = service.store.endpoint(name)
            values = [service.deployment_resource(name, d) for d in ep["deployments"].values()]
        return jsonify(arm_paging.page(values))

    @arm_route(app, config, "/onlineEndpoints/<name>/deployments/<dep>", ["GET", "PUT", "DELETE"])
    def online_deployment(name, dep):
        if request.method == "PUT":
            return answer(service.put_deployment(name, dep, json_body()))
        if request.method == "DELETE":
            with service.store.lock:
                if dep not in service.store.endpoint(name)["deployments"]:
                    return "", 204
            return answer(service.delete_deployment(name, dep))
        with service.store.lock:
            return jsonify(service.deployment_resource(name, service.store.deployment(name, dep)))

    @arm_route(app, config, "/onlineEndpoints/<name>/deployments/<dep>/getLogs", ["POST"])
    def deployment_logs(name, dep):
        body = request.get_json(force=True, silent=True) or {}
        lines = body.get("tail")
        if lines is not None and (isinstance(lines, bool) or not isinstance(lines, int) or lines < 0):
            raise ArmError("BadArgument", "'tail' must be a non-negative integer.", 400)
        with service.store.lock:
            service.store.deployment(name, dep)
        return jsonify({"content": tail(service.pool.log_path(name, dep), lines)})

    scoring.install(app, config, service, ws_tokens)
    service.restart_after_boot()
    return service
