# Databricks notebook source
# MAGIC %md
# MAGIC # Batch score
# MAGIC Scores the scoring split with the champion model (`@champion`, or stage Production) as a Spark UDF and writes the predictions.

# COMMAND ----------
# MAGIC %run ./common

# COMMAND ----------
dbutils.widgets.text("output_path", "dbfs:/FileStore/mlops/predictions.csv", "Where the predictions go")
output_path = dbutils.widgets.get("output_path")

# COMMAND ----------
import json

from pyspark.sql import functions as F

_, _, scoring = load_data()
champion_uri = model_uri("champion")
predict = mlflow.pyfunc.spark_udf(spark, champion_uri, result_type="double")
scored = spark.createDataFrame(scoring[FEATURES]).withColumn("prediction", predict(*[F.col(c) for c in FEATURES]))
display(scored.limit(5))

# COMMAND ----------
predictions = scored.toPandas()
dbutils.fs.put(output_path, predictions.to_csv(index=False), overwrite=True)
champion = holder(mlflow.MlflowClient(), "champion")
dbutils.notebook.exit(json.dumps({"rows": len(predictions), "champion": champion, "output": output_path}))
