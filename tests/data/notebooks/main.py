# Databricks notebook source
# MAGIC %md
# MAGIC # A notebook as users write it: widgets, %run, %sh, %cd, notebook.exit

# COMMAND ----------

dbutils.widgets.text("name", "world", "Who to greet")
dbutils.widgets.dropdown("mode", "short", ["short", "long"])
dbutils.widgets.multiselect("colours", "red", ["red", "green", "blue"])

# COMMAND ----------

# MAGIC %run ./helpers

# COMMAND ----------

greeting = greet(dbutils.widgets.get("name"), dbutils.widgets.get("mode"))
print(greeting)

# COMMAND ----------

# MAGIC %sh
# MAGIC echo "from sh in $(basename "$PWD")"

# COMMAND ----------

# MAGIC %cd sub

# COMMAND ----------

import json
import os

with open("data.txt") as f:  # relative to the working directory %cd set
    data = f.read().strip()
dbutils.notebook.exit(json.dumps({"greeting": greeting, "helper_constant": HELPER_CONSTANT, "data": data,
                                  "colours": dbutils.widgets.get("colours"), "cwd": os.path.basename(os.getcwd())}))

# COMMAND ----------

raise AssertionError("never runs: the notebook exited")
