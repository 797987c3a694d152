"""Model versions created over ARM: ``PUT .../models/<name>/versions/<version>`` from a datastore path.

azure-ai-ml's ``ml_client.models.create_or_update(Model(path=<local dir>))`` (and a deployment's
``model=Model(path=...)``, an anonymous model) uploads the folder to the default datastore
(datastores.py) and then PUTs the version with ``properties.modelUri`` =
``azureml://subscriptions/<s>/resourcegroups/<rg>/workspaces/<ws>/datastores/<ds>/paths/<path>``
(``_update_path``, ``LONG_URI_FORMAT``). The version becomes an MLflow registry version whose
source is that folder's ``mlflow-artifacts:/`` location, so the model asset routes, MLflow and
online deployments all read it. What ARM carries beyond MLflow's fields (``modelType``,
``isAnonymous``, ``properties``) is kept in version tags under ``azureml.`` and not shown as tags.
"""

from __future__ import annotations

import re

from emulator.errors import EmulatorError
from emulator.services.azureml import datastores
from emulator.services.azureml.arm_resources import ArmError
from emulator.settings import ServerConfig
from emulator.stores import safe_paths

TAG_PREFIX = "azureml."  # ARM-only fields, stored as MLflow version tags
TYPE_TAG = "azureml.modelType"
ANONYMOUS_TAG = "azureml.isAnonymous"
PROPERTY_PREFIX = "azureml.property."
MODEL_TYPES = ("mlflow_model", "custom_model", "triton_model")

_LONG = re.compile(r"^azureml://subscriptions/(?P<sub>[^/]+)/resourcegroups/(?P<rg>[^/]+)/workspaces/(?P<ws>[^/]+)"
                   r"/datastores/(?P<ds>[^/]+)/paths/(?P<path>.*)$", re.IGNORECASE)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")
_VERSION = re.compile(r"^[1-9][0-9]{0,8}$")
_SHORT = re.compile(r"^azureml://datastores/(?P<ds>[^/]+)/paths/(?P<path>.*)$", re.IGNORECASE)


def _bad(message: str, status: int = 400) -> ArmError:
    # fidelity: Azure ML datastores -- refusals
    return ArmError("UserError", message, status)


def datastore_path(config: ServerConfig, uri) -> tuple[str, list[str]]:
    """(datastore name, path segments) of a model version's ``modelUri``; refuses the rest."""
    if not isinstance(uri, str) or not uri:
        raise _bad("'properties.modelUri' is required: the azureml://.../datastores/<name>/paths/<path> "
                   "URI of the uploaded model folder.")
    m = _LONG.match(uri) or _SHORT.match(uri)
    if not m:
        raise _bad(f"Invalid modelUri '{uri}': the emulator registers models from this workspace's datastore "
                   "(azureml://subscriptions/<s>/resourcegroups/<rg>/workspaces/<ws>/datastores/<name>/paths/<path>); "
                   "register MLflow-logged models through MLflow.")
    if "sub" in m.groupdict() and m["sub"] is not None:
        from emulator.services.azureml.scope import scope_problem

        if scope_problem(config, m["sub"], m["rg"], m["ws"]):
            raise _bad(f"Invalid modelUri '{uri}': it names another workspace's datastore.")
    try:
        datastores.get(m["ds"])
    except ArmError as exc:
        raise _bad(exc.message) from None
    try:
        segments = safe_paths.split_segments(m["path"], shown=m["path"])
    except EmulatorError as exc:
        raise _bad(exc.message) from None
    if not segments:
        raise _bad(f"Invalid modelUri '{uri}': the path is empty.")
    return m["ds"], segments


def source_for(config: ServerConfig, uri) -> str:
    name, segments = datastore_path(config, uri)
    try:
        target = safe_paths.Storage(datastores.root(config, name)).resolve(segments, "/".join(segments))
    except EmulatorError as exc:
        raise _bad(exc.message) from None
    if not target.exists():
        raise _bad(f"Nothing was uploaded at '{'/'.join(segments)}' in datastore '{name}': upload the model "
                   "folder first (azure-ai-ml does, for Model(path=<local folder>)).")
    return datastores.source_of(name, "/".join(segments))


def _str_map(value, field: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ArmError("BadArgument", f"'properties.{field}' must be an object of strings.", 400)
    return value


def tags_for(props: dict) -> dict[str, str]:
    """MLflow version tags for an ARM body's properties (user tags + the ARM-only fields)."""
    model_type = props.get("modelType") or "custom_model"  # ARM's default when none is given
    if model_type not in MODEL_TYPES:
        raise ArmError("BadArgument", f"Invalid modelType '{model_type}': use one of {', '.join(MODEL_TYPES)}.", 400)
    tags = _str_map(props.get("tags"), "tags")
    if any(k.startswith(TAG_PREFIX) for k in tags):
        raise ArmError("BadArgument", f"Tag names starting with '{TAG_PREFIX}' are reserved.", 400)
    extra = {TYPE_TAG: model_type, ANONYMOUS_TAG: "true" if props.get("isAnonymous") is True else "false"}
    extra.update({PROPERTY_PREFIX + k: v for k, v in _str_map(props.get("properties"), "properties").items()})
    return {**tags, **extra}


def arm_fields(mv) -> tuple[dict, dict, str | None, bool]:
    """(user tags, properties, modelType or None, isAnonymous) of a stored version."""
    all_tags = dict(mv.tags or {})
    tags = {k: v for k, v in all_tags.items() if not k.startswith(TAG_PREFIX)}
    properties = {k[len(PROPERTY_PREFIX):]: v for k, v in all_tags.items() if k.startswith(PROPERTY_PREFIX)}
    return tags, properties, all_tags.get(TYPE_TAG), all_tags.get(ANONYMOUS_TAG) == "true"


def put_version(config: ServerConfig, registry, name: str, version: str, body) -> tuple[object, bool]:
    """Create (or update description/tags of) a version; (the MLflow version, created?)."""
    from mlflow.entities.model_registry import ModelVersionTag
    from mlflow.exceptions import MlflowException

    props = body.get("properties") if isinstance(body, dict) else None
    if not isinstance(props, dict):
        raise ArmError("BadArgument", "The request body must be {\"properties\": {...}}.", 400)
    source = source_for(config, props.get("modelUri"))
    tags = tags_for(props)
    description = props.get("description")
    if description is not None and not isinstance(description, str):
        raise ArmError("BadArgument", "'properties.description' must be a string.", 400)
    if not _NAME.match(name) or not _VERSION.match(version):
        raise ArmError("BadArgument", f"Invalid model name or version '{name}:{version}': names are letters, digits, "
                       "'-', '_' and '.' (255 at most, a letter or digit first); versions are positive integers here.",
                       400)
    try:
        if registry.get_registered_model(name)._is_prompt():
            raise ArmError("UserError", f"'{name}' is a prompt, not a model asset.", 409)
    except MlflowException:
        registry.create_registered_model(name)
    existing = {str(mv.version): mv for mv in registry.search_model_versions(
        f"name = '{name.replace(chr(39), chr(92) + chr(39))}'", max_results=10_000)}
    if version in existing:
        mv = existing[version]
        if mv.source != source:
            # fidelity: Azure ML datastores -- refusals (azure-ai-ml's ASSET_PATH_ERROR)
            raise ArmError("UserError", "Asset paths cannot be updated.", 400)
        registry.update_model_version(name, version, description or "")
        for key, value in tags.items():
            registry.set_model_version_tag(name, version, ModelVersionTag(key, value))
        return registry.get_model_version(name, version), False
    following = str(max((int(v) for v in existing if v.isdigit()), default=0) + 1)
    if version != following:
        raise ArmError("BadArgument", f"Version '{version}' of model '{name}' cannot be created here: the emulator's "
                       f"registry numbers versions in order, the next is '{following}'.", 400)
    mv = registry.create_model_version(name, source, tags=[ModelVersionTag(k, v) for k, v in tags.items()],
                                       description=description)
    return mv, True
