# The Compose fixtures ship with the harness (its --emulator-docker option uses them too).
from harness.compose_fixtures import *  # noqa: F401,F403
