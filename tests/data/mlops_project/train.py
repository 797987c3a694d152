# Databricks notebook source
# MAGIC %md
# MAGIC # Train
# MAGIC Fits a ridge regression with MLflow autologging and registers the model.

# COMMAND ----------
# MAGIC %run ./common

# COMMAND ----------
dbutils.widgets.text("alpha", "0.1", "Ridge alpha")
alpha = float(dbutils.widgets.get("alpha"))

# COMMAND ----------
from mlflow.models import infer_signature
from sklearn.linear_model import Ridge

train, holdout, _ = load_data()
mlflow.sklearn.autolog(log_models=False)  # params and training metrics; the model is logged below
with mlflow.start_run(run_name="train") as run:
    model = Ridge(alpha=alpha).fit(train[FEATURES], train["target"])
    info = mlflow.sklearn.log_model(model, name="model", registered_model_name=MODEL_NAME,
                                    signature=infer_signature(train[FEATURES], model.predict(train[FEATURES])),
                                    input_example=train[FEATURES].head(3))
print(f"registered {MODEL_NAME} version {info.registered_model_version} from run {run.info.run_id}")

# COMMAND ----------
dbutils.jobs.taskValues.set(key="run_id", value=run.info.run_id)
dbutils.jobs.taskValues.set(key="model_version", value=str(info.registered_model_version))
