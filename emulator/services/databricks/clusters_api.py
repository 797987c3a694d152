"""The read-only part of the Clusters API that tools use to recognise a Databricks workspace.

``clusters/list-node-types`` is what tools call to tell Databricks from plain MLflow, and
``w.clusters.select_node_type(...)`` picks from it. ``clusters/list`` and ``clusters/get`` show one
emulated interactive cluster, the "notebook" the code appears to run on. Shapes follow
databricks-sdk 0.162.0 (``service/compute.py``: ``ListNodeTypesResponse``/``NodeType``,
``ClusterDetails``), at ``/api/2.0`` and ``/api/2.1`` (the SDK's). Anything else under
``clusters/`` (create, start, edit, ...) stays 501 NOT_IMPLEMENTED via the app's 404 handler.
"""

from __future__ import annotations

import time

from flask import Flask, jsonify, request

from emulator.errors import EmulatorError
from emulator.settings import ServerConfig

# Cluster ids look like <MMDD>-<HHMMSS>-<8 lowercase letters/digits>; fixed so it survives restarts.
NOTEBOOK_CLUSTER_ID = "0101-000000-emulator"
NOTEBOOK_CLUSTER_NAME = "notebook"
SPARK_VERSION = "15.4.x-cpu-ml-scala2.12"  # an ML LTS runtime


def _node(node_type_id, cores, memory_mb, category, local_disks, disk_gb, *, gpus=0, io_cache=False,
          nvme_disks=0, nvme_gb=0, display_order=0):
    # Azure VM sizes and their temp disks (Azure's published sizes); every field the SDK's
    # select_node_type sorts or filters on is present, so its comparisons never meet a None.
    return {
        "node_type_id": node_type_id,
        "memory_mb": memory_mb,
        "num_cores": float(cores),
        "description": node_type_id,
        "instance_type_id": node_type_id,
        "category": category,
        "display_order": display_order,
        "is_deprecated": False,
        "is_encrypted_in_transit": False,
        "is_graviton": False,
        "is_hidden": False,
        "is_io_cache_enabled": io_cache,
        "node_info": {},
        "node_instance_type": {
            "instance_type_id": node_type_id,
            "local_disks": local_disks,
            "local_disk_size_gb": disk_gb,
            "local_nvme_disks": nvme_disks,
            "local_nvme_disk_size_gb": nvme_gb,
        },
        "num_gpus": gpus,
        "photon_driver_capable": gpus == 0,
        "photon_worker_capable": gpus == 0,
        "support_cluster_tags": True,
        "support_ebs_volumes": True,
        "support_port_forwarding": True,
    }


NODE_TYPES = [
    _node("Standard_DS3_v2", 4, 14336, "General Purpose", 1, 28),
    _node("Standard_DS4_v2", 8, 28672, "General Purpose", 1, 56),
    _node("Standard_DS5_v2", 16, 57344, "General Purpose", 1, 112),
    _node("Standard_D4s_v5", 4, 16384, "General Purpose", 0, 0),  # v5 sizes have no temp disk
    _node("Standard_F4s", 4, 8192, "Compute Optimized", 1, 16),
    _node("Standard_E8ds_v4", 8, 65536, "Memory Optimized", 1, 300, io_cache=True),
    _node("Standard_L8s_v2", 8, 65536, "Storage Optimized", 1, 80, io_cache=True, nvme_disks=1, nvme_gb=1788),
    _node("Standard_NC6s_v3", 6, 114688, "GPU Accelerated", 1, 736, gpus=1),
]
_BY_ID = {n["node_type_id"]: n for n in NODE_TYPES}


def notebook_cluster(config: ServerConfig, started_ms: int) -> dict:
    """A running single-node interactive cluster owned by the token's user (ClusterDetails)."""
    node = _BY_ID["Standard_DS3_v2"]
    return {
        "cluster_id": NOTEBOOK_CLUSTER_ID,
        "cluster_name": NOTEBOOK_CLUSTER_NAME,
        "spark_version": SPARK_VERSION,
        "node_type_id": node["node_type_id"],
        "driver_node_type_id": node["node_type_id"],
        "num_workers": 0,
        "cluster_cores": node["num_cores"],
        "cluster_memory_mb": node["memory_mb"],
        "autotermination_minutes": 120,
        "azure_attributes": {"first_on_demand": 1, "availability": "ON_DEMAND_AZURE", "spot_bid_max_price": -1.0},
        "spark_conf": {"spark.databricks.cluster.profile": "singleNode", "spark.master": "local[*, 4]"},
        "custom_tags": {"ResourceClass": "SingleNode"},
        "default_tags": {
            "Vendor": "Databricks",
            "Creator": config.user,
            "ClusterName": NOTEBOOK_CLUSTER_NAME,
            "ClusterId": NOTEBOOK_CLUSTER_ID,
        },
        "spark_env_vars": {"PYSPARK_PYTHON": "/databricks/python3/bin/python3"},
        "enable_elastic_disk": True,
        "enable_local_disk_encryption": False,
        "data_security_mode": "SINGLE_USER",
        "single_user_name": config.user,
        "runtime_engine": "STANDARD",
        "use_ml_runtime": True,
        "is_single_node": True,
        "cluster_source": "UI",
        "creator_user_name": config.user,
        "state": "RUNNING",
        "state_message": "",
        "start_time": started_ms,
        "last_restarted_time": started_ms,
        "spark_context_id": 1000000000000000000 + started_ms,
        "jdbc_port": 10000,
        "driver": {
            "node_id": "emulator-driver",
            "instance_id": "emulator-driver-instance",
            "start_timestamp": started_ms,
            "host_private_ip": "10.139.0.4",
            "private_ip": "10.139.64.4",
        },
        "executors": [],
        "init_scripts": [],
    }


def install(app: Flask, config: ServerConfig) -> None:
    started_ms = int(time.time() * 1000)

    def rule(path: str, view):
        for version in ("2.0", "2.1"):
            app.add_url_rule(f"/api/{version}/clusters/{path}", f"clusters_{path}_{version}", view, methods=["GET"])

    def list_node_types():
        # fidelity: Databricks workspace
        return jsonify({"node_types": NODE_TYPES})

    def list_clusters():
        cluster = notebook_cluster(config, started_ms)
        # The SDK sends filter_by as flattened query fields (filter_by.cluster_states=RUNNING, ...).
        states = request.args.getlist("filter_by.cluster_states")
        sources = request.args.getlist("filter_by.cluster_sources")
        if (states and cluster["state"] not in states) or (sources and cluster["cluster_source"] not in sources):
            return jsonify({})
        return jsonify({"clusters": [cluster]})  # fidelity: Databricks workspace

    def get_cluster():
        cluster_id = request.args.get("cluster_id")
        if not cluster_id:
            raise EmulatorError("INVALID_PARAMETER_VALUE", "Missing required field: cluster_id", 400)
        if cluster_id != NOTEBOOK_CLUSTER_ID:
            # fidelity: Databricks workspace
            raise EmulatorError("INVALID_PARAMETER_VALUE", f"Cluster {cluster_id} does not exist", 400)
        return jsonify(notebook_cluster(config, started_ms))

    rule("list-node-types", list_node_types)
    rule("list", list_clusters)
    rule("get", get_cluster)
