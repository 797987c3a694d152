"""Ships the top-level Dockerfile, docker-compose.yml and pyproject.toml inside the wheel.

They stay where the project layout wants them (the top of the checkout, the single source) and are
copied into ``emulator/control/docker/files/`` at build time, so Docker mode works from an installed package
(`emulator images build --offline`, `emulator up --docker` from any directory). Everything else is
in pyproject.toml.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SHIPPED = ("Dockerfile", "docker-compose.yml", "pyproject.toml")  # emulator.control.docker.packaged.SHIPPED


class BuildPyWithDockerFiles(build_py):
    def run(self):
        super().run()
        if self.editable_mode:  # an editable install finds them at the top of the checkout
            return
        target = Path(self.build_lib) / "emulator" / "control" / "docker" / "files"
        self.mkpath(str(target))
        for name in SHIPPED:
            self.copy_file(name, str(target / name), preserve_mode=False)


setup(cmdclass={"build_py": BuildPyWithDockerFiles})
