# Databricks notebook source
# MAGIC %md
# MAGIC # Validate
# MAGIC Evaluates the new version on the held-out set with `mlflow.evaluate`; it becomes the
# MAGIC `challenger` and passes if its R² reaches `min_r2`.

# COMMAND ----------
# MAGIC %run ./common

# COMMAND ----------
dbutils.widgets.text("min_r2", "0.3", "Lowest R² that passes")
min_r2 = float(dbutils.widgets.get("min_r2"))
version = dbutils.jobs.taskValues.get(taskKey="train", key="model_version", debugValue="1")

# COMMAND ----------
_, holdout, _ = load_data()
client = mlflow.MlflowClient()
assign(client, "challenger", version)
with mlflow.start_run(run_name=f"validate v{version}"):
    result = mlflow.evaluate(model_uri("challenger"), holdout, targets="target",
                             model_type="regressor",
                             evaluator_config={"log_model_explainability": False})
r2 = result.metrics["r2_score"]
passed = r2 >= min_r2
print(f"version {version}: r2={r2:.3f} (min {min_r2}) -> {'passed' if passed else 'failed'}")

# COMMAND ----------
dbutils.jobs.taskValues.set(key="passed", value=passed)
dbutils.jobs.taskValues.set(key="r2", value=r2)
