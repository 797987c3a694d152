"""Image builds from two checkouts take turns: each build prunes the untagged stage images it left,
which would delete the stage another checkout's build is about to COPY from (seen in a rehearsal:
"invalid from flag value build: No such image"). No Docker needed: the lock alone is checked."""

from __future__ import annotations

import fcntl
import threading
import time

from emulator.control.docker import images


def test_builds_of_two_checkouts_wait_for_each_other(tmp_path, monkeypatch):
    monkeypatch.setenv("EMULATOR_CACHE_DIR", str(tmp_path / "user-cache"))
    entered = threading.Event()
    lock_file = images.engine_lock_file()
    lock_file.parent.mkdir(parents=True, exist_ok=True)

    def other_checkouts_build():
        with images._lock(tmp_path / "checkout-b" / ".emulator-cache"):
            entered.set()

    with open(lock_file, "w") as held:  # a build of checkout A is running
        fcntl.flock(held, fcntl.LOCK_EX)
        thread = threading.Thread(target=other_checkouts_build, daemon=True)
        thread.start()
        time.sleep(1.0)
        assert not entered.is_set(), "checkout B's build started while A's was running"
        fcntl.flock(held, fcntl.LOCK_UN)
    assert entered.wait(timeout=120), "checkout B's build never started after A's ended"
    thread.join(timeout=120)


def test_the_same_process_can_build_again_after_a_build(tmp_path, monkeypatch):
    monkeypatch.setenv("EMULATOR_CACHE_DIR", str(tmp_path / "user-cache"))
    cache = tmp_path / "checkout" / ".emulator-cache"
    for _ in range(2):  # sequential builds (emulator, then Spark image) must not deadlock
        with images._lock(cache):
            pass
