# Databricks notebook source
dbutils.widgets.text("x", "1")
x = int(dbutils.widgets.get("x"))
dbutils.jobs.taskValues.set("child_square", x * x)
dbutils.notebook.exit(str(x * x))
