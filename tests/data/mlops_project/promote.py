# Databricks notebook source
# MAGIC %md
# MAGIC # Promote
# MAGIC Moves the `champion` alias to the validated version, if it passed.

# COMMAND ----------
# MAGIC %run ./common

# COMMAND ----------
version = dbutils.jobs.taskValues.get(taskKey="train", key="model_version", debugValue="1")
passed = dbutils.jobs.taskValues.get(taskKey="validate", key="passed", debugValue=False)
client = mlflow.MlflowClient()
if passed:
    assign(client, "champion", version)
    client.set_model_version_tag(MODEL_NAME, version, "validation", "passed")
else:
    client.set_model_version_tag(MODEL_NAME, version, "validation", "failed")
champion = holder(client, "champion")
print(f"champion is version {champion}")
dbutils.jobs.taskValues.set(key="champion_version", value=str(champion))
dbutils.notebook.exit(f"champion={champion}")
