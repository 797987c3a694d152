# Databricks notebook source
# MAGIC %md
# MAGIC ## Shared settings (`%run ./common` from every task)
# MAGIC The widgets are the job's parameters: `registry` picks the workspace model registry
# MAGIC (`databricks`, stages Staging/Production) or Unity Catalog (`databricks-uc`, three-level
# MAGIC model name, aliases challenger/champion).

# COMMAND ----------
import mlflow
import pandas as pd
from sklearn.datasets import load_diabetes
from sklearn.model_selection import train_test_split

dbutils.widgets.dropdown("registry", "databricks", ["databricks", "databricks-uc"], "Model registry")
dbutils.widgets.text("model_name", "mlops_diabetes", "Model name")
dbutils.widgets.text("catalog", "main", "UC catalog")
dbutils.widgets.text("schema", "default", "UC schema")

REGISTRY = dbutils.widgets.get("registry")
mlflow.set_registry_uri(REGISTRY)
if REGISTRY == "databricks-uc":
    MODEL_NAME = f"{dbutils.widgets.get('catalog')}.{dbutils.widgets.get('schema')}.{dbutils.widgets.get('model_name')}"
else:
    MODEL_NAME = dbutils.widgets.get("model_name")
print(f"registry={REGISTRY} model={MODEL_NAME}")

# COMMAND ----------
# The workspace registry has no aliases (MLflow refuses them there): its stages play the roles.
STAGES = {"challenger": "Staging", "champion": "Production"}


def assign(client, role: str, version: str) -> None:
    """Give ``version`` the role ``challenger`` or ``champion``."""
    if REGISTRY == "databricks-uc":
        client.set_registered_model_alias(MODEL_NAME, role, version)
    else:
        client.transition_model_version_stage(MODEL_NAME, version, STAGES[role],
                                              archive_existing_versions=role == "champion")


def model_uri(role: str) -> str:
    return f"models:/{MODEL_NAME}@{role}" if REGISTRY == "databricks-uc" else f"models:/{MODEL_NAME}/{STAGES[role]}"


def holder(client, role: str) -> str:
    """The version that has the role."""
    if REGISTRY == "databricks-uc":
        return client.get_model_version_by_alias(MODEL_NAME, role).version
    return client.get_latest_versions(MODEL_NAME, stages=[STAGES[role]])[0].version

# COMMAND ----------
def load_data():
    """The diabetes regression data set (shipped with scikit-learn): train, held-out and scoring
    splits that are the same in every task."""
    frame = load_diabetes(as_frame=True).frame
    train, rest = train_test_split(frame, test_size=0.4, random_state=42)
    holdout, scoring = train_test_split(rest, test_size=0.5, random_state=42)
    return train.reset_index(drop=True), holdout.reset_index(drop=True), scoring.reset_index(drop=True)


FEATURES = [c for c in load_diabetes(as_frame=True).frame.columns if c != "target"]
