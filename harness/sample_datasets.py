"""The local folder behind ``/databricks-datasets`` in a notebook's Spark reads (harness.spark_tables).

Databricks mounts sample data sets read-only at ``dbfs:/databricks-datasets``. Those files cannot be
fetched here, and none are imitated: the folder holds ``emulator-samples/``, CSV files written from
the small data sets scikit-learn ships inside its package (iris, wine, breast cancer, diabetes), and
a README saying so. Files a user puts beside them are read like any other.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

SAMPLES = "emulator-samples"
# scikit-learn loader -> file name; each is bundled with the package (no download).
LOADERS = {"load_iris": "iris", "load_wine": "wine", "load_breast_cancer": "breast_cancer",
           "load_diabetes": "diabetes"}
README = """# /databricks-datasets (emulated)

Not Databricks' sample data: these files are written by the emulator's harness from the small data
sets scikit-learn bundles (sklearn.datasets.{loaders}), one CSV with a header row each, under
emulator-samples/<name>/<name>.csv. Add your own files beside them to read them at
/databricks-datasets/... from a notebook's Spark session.
"""


def ensure(root: str | os.PathLike) -> Path:
    """Write the samples into ``root`` unless they are there; returns ``root``."""
    root = Path(root)
    done = root / SAMPLES / ".complete"
    if done.is_file():
        return root
    try:
        from sklearn import datasets
    except ImportError:
        print("note: scikit-learn is not installed: /databricks-datasets has no samples", file=sys.stderr)
        root.mkdir(parents=True, exist_ok=True)
        return root
    for loader, name in LOADERS.items():
        frame = getattr(datasets, loader)(as_frame=True).frame
        target = root / SAMPLES / name / f"{name}.csv"
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=target.parent, prefix=".", suffix=".tmp", delete=False) as tmp:
            frame.to_csv(tmp, index=False)
        os.replace(tmp.name, target)  # another process writing the same file: either copy is whole
    (root / "README.md").write_text(README.format(loaders="/".join(LOADERS)))
    done.write_text("")
    return root
