"""Benchmarks: what the emulator costs, measured side by side with a stock MLflow server."""
