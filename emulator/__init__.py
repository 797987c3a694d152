"""Local stand-ins for the Azure Databricks and Azure ML MLflow tracking backends."""

__version__ = "0.1.0"
