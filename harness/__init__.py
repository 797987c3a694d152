"""Checks for MLflow dual tracking, registry versions and Spark UDF scoring against the emulators."""

__version__ = "0.1.0"
