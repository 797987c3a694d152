# The Compose fixtures ship with the harness (its --emulator-docker option uses them too).
import os  # noqa: E402
import secrets  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import pytest  # noqa: E402

from emulator.control import launcher  # noqa: E402
from emulator.control.docker import compose, spark_cluster, spark_image  # noqa: E402
from harness.compose_fixtures import *  # noqa: F401,F403

SPARK_WORKERS = 2


@pytest.fixture(scope="session")
def spark_cluster_services(emulator_image, tmp_path_factory):
    """One Spark standalone cluster for the session: the Compose file's spark-master and
    SPARK_WORKERS spark-worker services (profile "spark"), Spark image built offline, free ports,
    a project of its own; `down -v` at the end."""
    image = spark_image.build()["image"]
    ports = {spark_cluster.MASTER_PORT_ENV: launcher.free_port(), spark_cluster.UI_PORT_ENV: launcher.free_port()}
    env_file = tmp_path_factory.mktemp("spark-compose") / "spark.env"
    env_file.write_text(f"EMULATOR_SPARK_IMAGE={image}\n" + "".join(f"{k}={v}\n" for k, v in ports.items()))
    deployment = compose.Deployment(compose.default_compose_file(), f"emuspark{os.getpid()}{secrets.token_hex(3)}",
                                    command=[*compose.compose_command(), "--env-file", str(env_file)])
    urls = spark_cluster.urls({k: str(v) for k, v in ports.items()})
    try:
        deployment.compose("--profile", spark_cluster.PROFILE, "up", "-d", "--scale",
                           f"spark-worker={SPARK_WORKERS}", "spark-master", "spark-worker")
        status = spark_cluster.wait_ready(urls["ui_url"], SPARK_WORKERS, timeout=300)
        yield SimpleNamespace(**urls, workers=SPARK_WORKERS, status=status, deployment=deployment)
    finally:
        deployment.compose("--profile", spark_cluster.PROFILE, "down", "-v", "--remove-orphans")
