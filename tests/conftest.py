import pytest

from harness.workspaces import Emulator


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    """Both workspaces as real local server processes on free loopback ports."""
    emu = Emulator(tmp_path_factory.mktemp("emulator-state")).up()
    yield emu
    emu.down()
