"""Tables for a notebook's SparkSession: the emulated workspace's own warehouse and metastore.

Databricks keeps tables in a metastore that outlives clusters and names them ``catalog.schema.table``
(Unity Catalog; ``hive_metastore`` is the workspace's legacy metastore). Here each Databricks workspace
has a Spark warehouse and an embedded Hive metastore (Derby) under its state dir, so a table saved by
one notebook run or job task is there for the next. Catalog names (``main``, ``hive_metastore``, the
catalogs Unity Catalog lists) are registered as aliases of Spark's session catalog by a small Java
plugin, compiled here with ``javac`` against pyspark's own jars once per Spark version.

Tables are Parquet, Spark's default: Delta Lake's Python package carries no jars (its
``configure_spark_with_delta_pip`` fetches them from Maven, which this machine cannot reach).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from harness.spark_jvm import pyspark_jars

# The catalogs every workspace answers to; Unity Catalog's own are added by the caller.
DEFAULT_CATALOGS = ("main", "hive_metastore", "workspace")
PLUGIN_CLASS = "emulator.WorkspaceCatalogAlias"
# fidelity: Tables in notebooks
# A non-session catalog gets Spark's V2 code paths, which cannot read or write the session catalog's
# (V1) Parquet tables; a DelegatingCatalogExtension over the session catalog keeps its name
# (spark_catalog), so Spark treats every alias as the session catalog itself: reads, saveAsTable,
# INSERT and DDL all work, and ``main.s.t`` is the table ``s.t`` of the one metastore.
CATALOG_SOURCE = """\
package emulator;

import org.apache.spark.sql.connector.catalog.DelegatingCatalogExtension;
import org.apache.spark.sql.util.CaseInsensitiveStringMap;

/** A catalog name (main, hive_metastore, ...) that is Spark's session catalog under another name. */
public final class WorkspaceCatalogAlias extends DelegatingCatalogExtension {
  @Override
  public void initialize(String name, CaseInsensitiveStringMap options) {
    setDelegateCatalog(org.apache.spark.sql.classic.SparkSession.active()
        .sessionState().catalogManager().v2SessionCatalog());
  }
}
"""
# fidelity: Tables in notebooks
# dbfs:/ paths in Spark: Hadoop's ViewFileSystemOverloadScheme with a mount table of its own ("dbfs";
# the file: scheme's is "default"), so dbfs:/databricks-datasets is the local folder and no other
# dbfs:/ path falls through to the local disk.
DBFS_SOURCE = """\
package emulator;

import java.io.IOException;
import java.net.URI;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.viewfs.ViewFileSystemOverloadScheme;

/** dbfs:/ for Spark: the mount points configured under fs.viewfs.mounttable.dbfs.* only. */
public final class DbfsMounts extends ViewFileSystemOverloadScheme {
  public DbfsMounts() throws IOException {
    super();
  }

  @Override
  public void initialize(URI uri, Configuration conf) throws IOException {
    Configuration own = new Configuration(conf);
    own.set("fs.viewfs.mounttable.default.name.key", "dbfs");
    own.set("fs.file.impl", "org.apache.hadoop.fs.LocalFileSystem");  // the mount targets: plain local files
    super.initialize(uri, own);
  }
}
"""
# file: paths: the same overload with a fallback to the local disk, and the JVM's working directory
# as the working directory (a view file system's is /user/<name>), so relative paths stay as Spark has them.
LOCAL_SOURCE = """\
package emulator;

import java.io.IOException;
import java.net.URI;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.viewfs.ViewFileSystemOverloadScheme;

/** file: for Spark: the local disk, with the mount points under fs.viewfs.mounttable.default.*. */
public final class LocalMounts extends ViewFileSystemOverloadScheme {
  public LocalMounts() throws IOException {
    super();
  }

  @Override
  public void initialize(URI uri, Configuration conf) throws IOException {
    super.initialize(uri, conf);
    setWorkingDirectory(new Path(new java.io.File(System.getProperty("user.dir")).toURI()));
  }
}
"""
SOURCES = {"WorkspaceCatalogAlias.java": CATALOG_SOURCE, "DbfsMounts.java": DBFS_SOURCE,
           "LocalMounts.java": LOCAL_SOURCE}


class TablesUnavailable(RuntimeError):
    """The catalog plugin cannot be built here (no javac): two-level names still work."""


def catalog_jar(cache_dir: str | os.PathLike) -> Path:
    """The compiled plugin for this pyspark, built on first use (``javac``) and kept in ``cache_dir``."""
    version, jars = pyspark_jars()
    key = hashlib.sha256("".join(SOURCES.values()).encode()).hexdigest()[:12]
    target = Path(cache_dir) / f"spark-{version}-{key}" / "workspace-catalog.jar"
    if target.is_file():
        return target
    javac = shutil.which("javac", path=_java_path())
    if javac is None:
        raise TablesUnavailable("javac (a JDK) is needed to build the catalog plugin for three-level table names")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as work:
        package = Path(work) / "emulator"
        package.mkdir()
        for name, text in SOURCES.items():
            (package / name).write_text(text)
        classes = Path(work) / "classes"
        done = subprocess.run([javac, "-nowarn", "-cp", str(jars / "*"), "-d", str(classes),
                               *(str(package / name) for name in SOURCES)],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise TablesUnavailable(f"javac could not build the catalog plugin for Spark {version}:\n{done.stderr}")
        built = Path(work) / "workspace-catalog.jar"
        with zipfile.ZipFile(built, "w") as jar:  # a jar is a zip; no `jar` tool needed
            for path in sorted(classes.rglob("*.class")):
                jar.write(path, path.relative_to(classes).as_posix())
        os.replace(built, target)  # concurrent builders: the last identical jar wins
    return target


def _java_path() -> str:
    home = os.environ.get("JAVA_HOME")
    path = os.environ.get("PATH", os.defpath)
    return f"{home}/bin{os.pathsep}{path}" if home else path


def session_conf(tables_dir: str | os.PathLike, jar: Path | None, local: bool = True) -> dict[str, str]:
    """Static settings for a new SparkSession whose tables live in ``tables_dir``. ``local``: the
    executors share the driver's JVM (local[*]), so the file system mounts can be used."""
    root = Path(tables_dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    conf = {
        "spark.sql.catalogImplementation": "hive",
        "spark.sql.warehouse.dir": (root / "warehouse").as_uri(),
        # Derby, embedded: one Spark driver at a time may open a workspace's metastore.
        "spark.hadoop.javax.jdo.option.ConnectionURL": f"jdbc:derby:;databaseName={root / 'metastore'};create=true",
        # derby.log would land in the notebook's folder (the working directory).
        "spark.driver.extraJavaOptions": f"-Dderby.stream.error.file={root / 'derby.log'}",
    }
    if jar is not None:
        # On the driver's class path from its start: spark-submit opens file: paths (with LocalMounts)
        # before any spark.jars is loaded. Executors on a cluster lack it: no mounts there.
        conf["spark.driver.extraClassPath"] = str(jar)
        if local:
            conf.update(datasets_conf(root / "databricks-datasets"))
    return conf


def datasets_conf(datasets: Path) -> dict[str, str]:
    """``/databricks-datasets`` and ``dbfs:/databricks-datasets`` in Spark paths: the local ``datasets``."""
    from harness import sample_datasets

    target = sample_datasets.ensure(datasets).resolve().as_uri()
    return {
        # fidelity: Tables in notebooks
        # On Databricks a path without a scheme is a DBFS path; here it stays local, except this mount.
        "spark.hadoop.fs.file.impl": "emulator.LocalMounts",
        "spark.hadoop.fs.viewfs.overload.scheme.target.file.impl": "org.apache.hadoop.fs.LocalFileSystem",
        "spark.hadoop.fs.viewfs.mounttable.default.link./databricks-datasets": target,
        "spark.hadoop.fs.viewfs.mounttable.default.linkFallback": "file:///",
        "spark.hadoop.fs.dbfs.impl": "emulator.DbfsMounts",
        "spark.hadoop.fs.viewfs.overload.scheme.target.dbfs.impl": "org.apache.hadoop.fs.LocalFileSystem",
        "spark.hadoop.fs.viewfs.mounttable.dbfs.link./databricks-datasets": target,
    }


def register_catalogs(session, names) -> list[str]:
    """Name ``names`` as aliases of the session catalog (a runtime setting: works on a running session)."""
    registered = []
    for name in dict.fromkeys(n.lower() for n in names):
        if name and name != "spark_catalog" and name.replace("_", "").isalnum():
            session.conf.set(f"spark.sql.catalog.{name}", PLUGIN_CLASS)
            registered.append(name)
    return registered


def uc_catalogs(workspace) -> list[str]:
    """The catalogs the workspace's Unity Catalog lists (none if it cannot be asked)."""
    try:
        from databricks.sdk import WorkspaceClient

        client = WorkspaceClient(host=workspace.url, token=workspace.token)
        return [c.name for c in client.catalogs.list() if c.name]
    except Exception as exc:  # noqa: BLE001  (the default catalogs still work)
        print(f"note: Unity Catalog's catalogs were not listed ({type(exc).__name__}); "
              f"{', '.join(DEFAULT_CATALOGS)} are", file=sys.stderr)
        return []
