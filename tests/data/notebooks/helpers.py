# Databricks notebook source
HELPER_CONSTANT = 42

# COMMAND ----------

def greet(name, mode):
    return f"Hello, {name}!" if mode == "short" else f"Hello there, dear {name}, how do you do?"
