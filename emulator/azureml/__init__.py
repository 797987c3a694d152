"""The Azure Machine Learning workspace stand-in (ARM discovery and the scoped MLflow REST API)."""

from __future__ import annotations

from flask import Flask

from emulator.settings import ServerConfig


def install(app: Flask, config: ServerConfig) -> None:
    pass
