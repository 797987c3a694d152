"""The notebook-jobs image: the Databricks workspace on the Spark image, so the notebook tasks of
its jobs (child processes of the workspace server) have Java and PySpark (``docker/notebook-jobs``).

Built from two images this package builds already: the emulator image (its project files) and the
Spark image (Debian's JRE, PySpark, scikit-learn on the same dependency venv). Reused while its
build key label (both images' ids and the Dockerfile folder) matches.
"""

from __future__ import annotations

from emulator.control.docker import images, spark_image

IMAGE = "mlflow-azure-emulator-notebook-jobs:latest"  # fidelity: Jobs API (a notebook task under Compose)
IMAGE_ENV = "EMULATOR_NOTEBOOK_JOBS_IMAGE"  # what docker/notebook-jobs/compose.yml runs
FOLDER = ("docker", "notebook-jobs")


def build(image: str = IMAGE, emulator_image: str = images.IMAGE, force: bool = False) -> dict:
    """Build (or reuse) the image; the emulator and Spark images are built first when missing."""
    timings: dict[str, float] = {}
    if not images.docker_image_id(emulator_image):
        timings.update(images.build(offline=True, image=emulator_image)["seconds"])
    spark = spark_image.build()
    timings.update(spark["seconds"])
    root = images.project_root()
    cache = images.cache_dir(root)
    folder = root.joinpath(*FOLDER)
    with images._lock(cache):
        with images.Step(1, 1, f"notebook-jobs image {image}") as step:
            key = images.folder_key(f"{images.docker_image_id(emulator_image)}|"
                                    f"{images.docker_image_id(spark['image'])}", folder)
            if not images.image_current(image, key, step, force):
                images.classic_build(image, key, folder, ["--build-arg", f"EMULATOR_IMAGE={emulator_image}",
                                                          "--build-arg", f"SPARK_IMAGE={spark['image']}"],
                                     cache / "logs" / "notebook-jobs-image.log", label="docker build (notebook jobs)")
        timings["notebook_jobs_image"] = step.elapsed
    return {"image": image, "emulator_image": emulator_image, "spark_image": spark["image"], "seconds": timings}
