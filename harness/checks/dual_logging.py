"""Check 1: a Databricks run and its Azure ML mirror hold the same params, tags, metrics and artifacts."""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections import Counter

from mlflow import MlflowClient
from mlflow.entities import Run

from harness.checks.result import CheckResult

# The tag the linking mirror puts on each Azure ML run: the Databricks run it copies.
SOURCE_RUN_TAG = "emulator.source_run_id"

# Tags that legitimately differ between a run and its mirror, and why. Everything else must match.
IGNORED_TAGS = {
    SOURCE_RUN_TAG: "only on the mirror: names the Databricks run it copies",
    "emulator.source_workspace": "only on the mirror: names the Databricks workspace it copies from",
    "mlflow.rootRunId": "a run id: each workspace has its own ids",
    "mlflow.parentRunId": "a run id: each workspace has its own ids",
    "mlflow.user": "Databricks takes the user from the token, Azure ML from the AAD identity",
    "mlflow.log-model.history": "records run ids and artifact locations of the workspace it is in",
}
IGNORED_TAG_PREFIXES = {
    "mlflow.databricks.": "Databricks notebook/cluster/workspace context, not copied to Azure ML",
    "azureml.": "Azure ML's own system tags",
    "_aml_system_": "Azure ML's own system tags",
}


def ignored_tag(key: str) -> bool:
    return key in IGNORED_TAGS or any(key.startswith(p) for p in IGNORED_TAG_PREFIXES)


def last_run_id(client: MlflowClient, experiment_name: str) -> str:
    """The most recently started run of an experiment (what the seed's `last_run_id` is)."""
    exp = client.get_experiment_by_name(experiment_name)
    if exp is None:
        raise LookupError(f"experiment {experiment_name!r} not found")
    runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"], max_results=1)
    if not runs:
        raise LookupError(f"experiment {experiment_name!r} has no runs")
    return runs[0].info.run_id


def find_mirror(source: Run, source_experiment_name: str, mirror: MlflowClient) -> tuple[Run | None, str]:
    """The mirrored run: in the experiment of the same name, tagged with the source run id."""
    exp = mirror.get_experiment_by_name(source_experiment_name)
    if exp is None:
        return None, f"experiment {source_experiment_name!r} is missing in azureml"
    runs = mirror.search_runs(
        [exp.experiment_id], filter_string=f"tags.`{SOURCE_RUN_TAG}` = '{source.info.run_id}'", max_results=10
    )
    if not runs:
        return None, (
            f"no run in azureml experiment {source_experiment_name!r} is tagged "
            f"{SOURCE_RUN_TAG}={source.info.run_id} (is the workspace linked?)"
        )
    if len(runs) > 1:
        ids = ", ".join(r.info.run_id for r in runs)
        return runs[0], f"{len(runs)} mirrors found ({ids}); compared the first"
    return runs[0], ""


def check_dual_logging(
    databricks: MlflowClient,
    azureml: MlflowClient,
    run_id: str | None = None,
    experiment_name: str | None = None,
    mirror_run_id: str | None = None,
    compare_artifacts: bool = True,
) -> CheckResult:
    """Compare a Databricks run (by id, or the last run of `experiment_name`) with its Azure ML mirror.

    `mirror_run_id` skips the lookup by tag (e.g. when the caller already knows the mirror)."""
    result = CheckResult("dual_logging")
    started = time.perf_counter()
    try:
        if run_id is None:
            if experiment_name is None:
                raise ValueError("give run_id or experiment_name")
            run_id = last_run_id(databricks, experiment_name)
        source = databricks.get_run(run_id)
        exp_name = databricks.get_experiment(source.info.experiment_id).name
        result.subject = f"databricks run {run_id} in {exp_name!r} vs its azureml mirror"
        if mirror_run_id:
            mirror, problem = azureml.get_run(mirror_run_id), ""
        else:
            mirror, problem = find_mirror(source, exp_name, azureml)
        result.timings["find_mirror"] = time.perf_counter() - started
        if mirror is None:
            result.differ(f"run {run_id}", problem)
            return result
        if problem:
            result.differ(f"run {run_id}", problem)
        result.details.update(
            databricks_run_id=run_id,
            azureml_run_id=mirror.info.run_id,
            azureml_experiment_id=mirror.info.experiment_id,
            experiment_name=exp_name,
        )
        _compare_run_info(result, source, mirror)
        _compare_mapping(result, "param", source.data.params, mirror.data.params)
        _compare_tags(result, source.data.tags, mirror.data.tags)
        t = time.perf_counter()
        _compare_metrics(result, databricks, azureml, source, mirror)
        result.timings["metrics"] = time.perf_counter() - t
        if compare_artifacts:
            t = time.perf_counter()
            _compare_artifacts(result, databricks, azureml, source.info.run_id, mirror.info.run_id)
            result.timings["artifacts"] = time.perf_counter() - t
        t = time.perf_counter()
        _compare_logged_models(result, databricks, azureml, source, mirror, compare_artifacts)
        result.timings["logged_models"] = time.perf_counter() - t
    except Exception as exc:  # the report must say what broke, not crash the whole harness
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        result.timings["total"] = time.perf_counter() - started
    return result


# The mirror's marker on each copied logged model, and logged-model tags that name per-workspace things.
SOURCE_MODEL_TAG = "emulator.source_model_id"
IGNORED_MODEL_TAGS = {
    SOURCE_MODEL_TAG: "only on the mirror: names the Databricks logged model it copies",
    "mlflow.modelVersions": "registry versions: the registry is not dual (the seed registers in Databricks only)",
}


def _logged_models(client: MlflowClient, experiment_id: str, run_id: str) -> list:
    return list(client.search_logged_models(experiment_ids=[experiment_id],
                                            filter_string=f"source_run_id = '{run_id}'"))


def _compare_logged_models(result: CheckResult, databricks: MlflowClient, azureml: MlflowClient,
                           source: Run, mirror: Run, compare_artifacts: bool) -> None:
    """MLflow 3 keeps log_model output in logged models (not run artifacts): compare those too."""
    src_models = _logged_models(databricks, source.info.experiment_id, source.info.run_id)
    result.compared["logged_models"] = len(src_models)
    if not src_models:
        return
    try:
        dst_models = _logged_models(azureml, mirror.info.experiment_id, mirror.info.run_id)
    except Exception as exc:  # e.g. a target without the logged-models API (as real Azure ML)
        result.differ("logged models", f"cannot be listed in azureml ({type(exc).__name__}: "
                                       f"{str(exc).splitlines()[0][:200]})")
        return
    by_source = {m.tags.get(SOURCE_MODEL_TAG): m for m in dst_models}
    by_name = {m.name: m for m in dst_models}
    for src in src_models:
        where = f"logged model {src.name}"
        dst = by_source.get(src.model_id) or by_name.get(src.name)
        if dst is None:
            result.differ(where, f"missing in azureml (databricks model_id {src.model_id})")
            continue
        for attr in ("name", "model_type", "status"):
            a, b = str(getattr(src, attr)), str(getattr(dst, attr))
            if a != b:
                result.differ(f"{where} {attr}", f"{a!r} in databricks, {b!r} in azureml", a, b)
        _compare_mapping(result, f"{where} param", src.params, dst.params, count=False)
        keep = lambda tags: {k: v for k, v in tags.items() if k not in IGNORED_MODEL_TAGS and not ignored_tag(k)}
        _compare_mapping(result, f"{where} tag", keep(src.tags), keep(dst.tags), count=False)
        if compare_artifacts:
            src_files = _tree_digests(databricks, src.artifact_location)
            dst_files = _tree_digests(azureml, dst.artifact_location)
            result.compared["logged_model_files"] = result.compared.get("logged_model_files", 0) + len(src_files)
            _compare_files(result, f"{where} file", src_files, dst_files)


def _compare_run_info(result: CheckResult, source: Run, mirror: Run) -> None:
    for attr in ("status", "run_name"):
        a, b = getattr(source.info, attr), getattr(mirror.info, attr)
        if a != b:
            result.differ(f"run {attr}", f"{a!r} in databricks, {b!r} in azureml", a, b)


def _compare_mapping(result: CheckResult, kind: str, src: dict, dst: dict, count: bool = True) -> None:
    if count:
        result.compared[f"{kind}s"] = len(src)
    for key in sorted(src.keys() | dst.keys()):
        if key not in dst:
            result.differ(f"{kind} {key}", "missing in azureml", src[key], None)
        elif key not in src:
            result.differ(f"{kind} {key}", "only in azureml", None, dst[key])
        elif src[key] != dst[key]:
            result.differ(f"{kind} {key}", f"value differs ({src[key]!r} in databricks, {dst[key]!r} in azureml)",
                          src[key], dst[key])


def _compare_tags(result: CheckResult, src: dict, dst: dict) -> None:
    kept_src = {k: v for k, v in src.items() if not ignored_tag(k)}
    kept_dst = {k: v for k, v in dst.items() if not ignored_tag(k)}
    _compare_mapping(result, "tag", kept_src, kept_dst)
    result.compared["tags_ignored"] = sorted((src.keys() | dst.keys()) - (kept_src.keys() | kept_dst.keys()))


def _history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, int, float]]:
    return [(m.step, m.timestamp, m.value) for m in client.get_metric_history(run_id, key)]


def _same_value(a: float, b: float) -> bool:
    return a == b or (a != a and b != b)  # NaN logged on both sides is the same point


def _compare_metrics(result: CheckResult, databricks, azureml, source: Run, mirror: Run) -> None:
    keys = sorted(source.data.metrics.keys() | mirror.data.metrics.keys())
    points = 0
    for key in keys:
        src = _history(databricks, source.info.run_id, key) if key in source.data.metrics else []
        dst = _history(azureml, mirror.info.run_id, key) if key in mirror.data.metrics else []
        points += len(src)
        if not dst:
            result.differ(f"metric {key}", f"missing in azureml ({len(src)} points)")
            continue
        if not src:
            result.differ(f"metric {key}", f"only in azureml ({len(dst)} points)")
            continue
        _compare_history(result, key, src, dst)
    result.compared["metrics"] = len(source.data.metrics)
    result.compared["metric_points"] = points


def _compare_history(result: CheckResult, key: str, src: list, dst: list) -> None:
    """Match points exactly, then by (step, timestamp), then by step; what is left is missing/extra."""
    per_step = Counter(step for step, _, _ in src)

    def where(step: int, ts: int) -> str:
        # Several points at one step (log_metric without step= logs them all at step 0): add the time.
        return f"metric {key} step {step}" + (f" (timestamp {ts})" if per_step[step] > 1 else "")

    left_src = list(src)
    left_dst = list(dst)
    for point in list(left_src):
        for other in left_dst:
            if point[:2] == other[:2] and _same_value(point[2], other[2]):
                left_src.remove(point)
                left_dst.remove(other)
                break
    for match_on, what in ((2, "value"), (1, None)):
        for point in list(left_src):
            for other in left_dst:
                if point[:match_on] == other[:match_on]:
                    step, ts, value = point
                    if what == "value":
                        msg = f"value differs ({value!r} in databricks, {other[2]!r} in azureml)"
                    else:
                        parts = [f"timestamp differs ({ts} in databricks, {other[1]} in azureml)"]
                        if not _same_value(value, other[2]):
                            parts.append(f"value differs ({value!r} in databricks, {other[2]!r} in azureml)")
                        msg = "; ".join(parts)
                    result.differ(where(step, ts), msg, point, other)
                    left_src.remove(point)
                    left_dst.remove(other)
                    break
    for step, ts, value in left_src:
        result.differ(where(step, ts), f"missing in azureml (value {value!r})", (step, ts, value), None)
    for step, ts, value in left_dst:
        result.differ(f"metric {key} step {step}", f"only in azureml (value {value!r}, timestamp {ts})",
                      None, (step, ts, value))


def _digest_dir(local: str) -> dict[str, tuple[int, str]]:
    out: dict[str, tuple[int, str]] = {}
    for root, _, files in os.walk(local):
        for name in files:
            full = os.path.join(root, name)
            digest = hashlib.sha256()
            with open(full, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
            out[os.path.relpath(full, local).replace(os.sep, "/")] = (os.path.getsize(full), digest.hexdigest())
    return out


def artifact_digests(client: MlflowClient, run_id: str) -> dict[str, tuple[int, str]]:
    """Every artifact file of a run: relative path -> (size, sha256), read back through the client."""
    with tempfile.TemporaryDirectory(prefix="harness-artifacts-") as tmp:
        return _digest_dir(client.download_artifacts(run_id, "", tmp))


def _tree_digests(client: MlflowClient, artifact_uri: str) -> dict[str, tuple[int, str]]:
    """Every file under an artifact URI (a logged model's location), read through that workspace."""
    import mlflow.artifacts

    with tempfile.TemporaryDirectory(prefix="harness-model-") as tmp:
        local = mlflow.artifacts.download_artifacts(artifact_uri=artifact_uri, dst_path=tmp,
                                                    tracking_uri=client._tracking_client.tracking_uri)
        return _digest_dir(local)


def _compare_files(result: CheckResult, kind: str, src: dict, dst: dict) -> None:
    for path in sorted(src.keys() | dst.keys()):
        if path not in dst:
            result.differ(f"{kind} {path}", "missing in azureml", src[path][1], None)
        elif path not in src:
            result.differ(f"{kind} {path}", "only in azureml", None, dst[path][1])
        elif src[path][1] != dst[path][1]:
            (s_size, s_sha), (d_size, d_sha) = src[path], dst[path]
            result.differ(
                f"{kind} {path}",
                f"sha256 differs ({s_sha[:12]}… {s_size} B in databricks, {d_sha[:12]}… {d_size} B in azureml)",
                s_sha, d_sha,
            )


def _compare_artifacts(result: CheckResult, databricks, azureml, src_run: str, dst_run: str) -> None:
    src = artifact_digests(databricks, src_run)
    dst = artifact_digests(azureml, dst_run)
    result.compared["artifacts"] = len(src)
    result.details["artifacts"] = {path: sha for path, (_, sha) in sorted(src.items())}
    _compare_files(result, "artifact", src, dst)
