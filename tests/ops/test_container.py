"""The image, built from the Dockerfile and run for real: `make container-test`.

ops/container/image_test.py builds the Dockerfile unchanged with buildah (chroot isolation,
on a debootstrap stand-in for python:3.11-slim that is cached between runs), then runs the
image as uid 10001: --version, --help, a directory import and `emaillog run` against
exchange-sim on the host (ready, a message logged and moved, metrics, the HEALTHCHECK,
SIGTERM drains and exits 0), and checks that the runtime image holds no compiler, pip cache
or source tree. It needs root with buildah and debootstrap, which `make test` installs
(`make container-tools`); without them this test fails, it never skips.
"""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from tests.ops import REPO

#: Cold (the stand-in base built by debootstrap) about 1.5 minutes here, warm about 30 s;
#: every step of image_test.py has its own, shorter timeout.
TIMEOUT_SECONDS = 1800


@pytest.mark.timeout(TIMEOUT_SECONDS + 300)
def test_the_image_builds_and_runs_the_service(capsys: pytest.CaptureFixture[str]) -> None:
    process = subprocess.Popen(
        ["make", "--no-print-directory", "container-test"],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # so a timeout can stop make and everything under it
    )
    try:
        output, _ = process.communicate(timeout=TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGTERM)  # image_test.py cleans up on SIGTERM
        try:
            output, _ = process.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
        pytest.fail(f"make container-test took over {TIMEOUT_SECONDS} s:\n{output[-20000:]}")
    assert process.returncode == 0, f"make container-test failed:\n{output[-20000:]}"
    assert "container-test: PASSED" in output, output[-20000:]
    with capsys.disabled():  # the summary (times, image size) in make test's output
        summary = [line for line in output.splitlines() if "container-test: summary:" in line]
        print("\n" + "\n".join(summary))
