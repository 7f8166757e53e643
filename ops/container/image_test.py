"""Build the Dockerfile unchanged and run the image for real: `make container-test`.

There is no Docker engine here. Debian's buildah builds the Dockerfile with
`--isolation chroot` (its FROM image is the debootstrap stand-in of standin_base.py), and
`buildah run --isolation chroot` runs commands inside the image. Chroot isolation shares the
host's network, so the service in the image reaches exchange-sim on the host over loopback.

Checks, in order (each one fails the run):
1. the build, with the machine's CA bundle mounted read-only at /etc/ssl/certs and the
   machine's pip settings (index, timeout; `cert` pointing at that bundle) on /etc/pip.conf;
2. the runtime image: no compiler, no pip cache, no source tree, a non-editable install;
3. as uid 10001: `emaillog --version` (the pyproject version) and `emaillog --help`;
4. `emaillog directory import` of one salesperson and one contact into the embedded
   PostgreSQL in the image's data directory (EMAILLOG_DATA_DIR=/var/lib/emaillog);
5. `emaillog run` against exchange-sim on the host: /readyz ready; a message delivered through
   the simulator's /_sim/ side channel is logged (a `disposed` log line with outcome logged)
   and moved to the storage folder; /metrics counts it; the web UI (EMAILLOG_UI_AUTH=none on
   loopback) serves a page, its stylesheet, the entry and the stored message byte for byte;
6. the image's HEALTHCHECK command, read from the built image, succeeds while the service runs;
7. SIGTERM to the service process (what `docker stop` does to PID 1) drains and exits 0; the
   HEALTHCHECK then fails.
The image size is reported. The built image and its container are removed at the end (the
cached stand-in base is kept); on failure the service's and build's output is printed.

    python ops/container/image_test.py [--context DIR] [--keep]
"""

from __future__ import annotations

import argparse
import configparser
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import standin_base  # beside this file (sys.path above)

REPO = Path(__file__).resolve().parents[2]
USER = "10001:10001"
IMAGE_REPOSITORY = "localhost/emaillog-container-test"
MAILBOX = "queue@example.com"
QUEUE = "Email Logging/Queue"
STORAGE = "Email Logging/Storage"
CA_DIR = "/etc/ssl/certs"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
#: Images of this test older than this are left over from a killed run: removed at start.
STALE_SECONDS = 6 * 3600

BUILD_TIMEOUT = 1200.0
COMMAND_TIMEOUT = 180.0
READY_TIMEOUT = 120.0
PROCESSED_TIMEOUT = 60.0
#: EMAILLOG_DRAIN_TIMEOUT_SECONDS (set below) plus start-up of the interpreter's shutdown.
DRAIN_SECONDS = 20
EXIT_TIMEOUT = DRAIN_SECONDS + 40.0

COMPILERS = ("gcc", "cc", "c++", "g++", "clang", "tcc", "x86_64-linux-gnu-gcc", "cc1")


class Failure(Exception):
    pass


def log(message: str) -> None:
    print(f"container-test: {message}", flush=True)


def tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])


def buildah(*args: str, timeout: float = COMMAND_TIMEOUT) -> str:
    result = subprocess.run(
        ["buildah", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise Failure(
            f"buildah {' '.join(args[:2])} exited {result.returncode}:\n"
            + tail(result.stdout + result.stderr)
        )
    return result.stdout


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http(
    method: str, url: str, body: bytes | None = None, timeout: float = 10.0
) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_for(
    what: str, probe: Callable[[], bool], timeout: float, alive: Callable[[], None]
) -> None:
    """Poll `probe` until it is true; `alive` raises if what we wait on has died."""
    deadline = time.monotonic() + timeout
    while True:
        alive()
        try:
            if probe():
                return
        except (OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise Failure(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.5)


# --- inputs ----------------------------------------------------------------------------------


def dockerfile_bases(dockerfile: Path) -> set[str]:
    """The images the Dockerfile's stages start FROM (not earlier stages)."""
    stages: set[str] = set()
    bases: set[str] = set()
    for raw in dockerfile.read_text().splitlines():
        words = raw.split()
        if len(words) >= 2 and words[0].upper() == "FROM":
            image = next(w for w in words[1:] if not w.startswith("--"))
            if image not in stages:
                bases.add(image)
            if len(words) >= 4 and words[-2].upper() == "AS":
                stages.add(words[-1])
    return bases


def pip_conf() -> str:
    """The machine's pip settings for the build: index URLs and timeouts as pip sees them here
    (config files and PIP_* variables), `cert` the machine's CA bundle as mounted in the build.
    Local (file:) indexes and find-links are left out: they are not in the build."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    settings: dict[str, str] = {}
    env: dict[str, str] = {}
    for line in result.stdout.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        value = value.strip().strip("'\"")
        scope, _, name = key.rpartition(".")
        target = env if scope == ":env:" else settings
        if scope in (":env:", "global", "install", "download"):
            target[name] = value
    settings.update(env)  # PIP_* variables win over files, as in pip
    config = configparser.ConfigParser()
    config["global"] = {}
    for name in ("index-url", "extra-index-url", "trusted-host", "proxy"):
        if name in settings:
            kept = [v for v in settings[name].split() if not v.startswith("file:")]
            if kept:
                config["global"][name] = " ".join(kept)
    for name in ("timeout", "default-timeout", "retries"):
        if name in settings:
            config["global"]["timeout" if name == "default-timeout" else name] = settings[name]
    config["global"]["cert"] = CA_BUNDLE
    lines = ["# written by ops/container/image_test.py from this machine's pip settings"]
    for section in config.sections():
        lines.append(f"[{section}]")
        lines += [f"{key} = {value}" for key, value in config[section].items()]
    return "\n".join(lines) + "\n"


DIRECTORY_CSV = {
    "salespersons.csv": "code,name,email\nSP01,Sally Seller,sally@ourco.example\n",
    "contacts.csv": "no,name,type,company_no,email\n"
    "CT01,Carl Customer,person,,carl@customer.example\n",
    "templates.csv": "code,description,group_code,unit_cost,unit_duration_min\n"
    "EMAIL,E-mail,SALES,0,0\n",
}


def message(message_id: str) -> bytes:
    return (
        "From: Sally Seller <sally@ourco.example>\r\n"
        "To: Carl Customer <carl@customer.example>\r\n"
        "Subject: Container test\r\n"
        f"Message-ID: {message_id}\r\n"
        "Date: Mon, 07 Dec 2026 09:00:00 +0000\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
        "Hello Carl, the quote is attached in spirit.\r\n"
    ).encode()


# --- processes -------------------------------------------------------------------------------


def children_of(pid: int) -> Iterator[int]:
    """Every descendant of pid (from /proc's parent links)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    todo = list(parents.get(pid, []))
    while todo:
        child = todo.pop()
        yield child
        todo += parents.get(child, [])


def service_pid(buildah_pid: int) -> int | None:
    """The emaillog process inside the container: the descendant of `buildah run` that runs
    as uid 10001 and is neither of buildah's helpers (buildah-chroot-runtime/-exec)."""
    found: list[int] = []
    for pid in children_of(buildah_pid):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        uid = re.search(r"^Uid:\s+(\d+)", status, flags=re.MULTILINE)
        if not uid or uid.group(1) != USER.split(":")[0]:
            continue
        # python /opt/venv/bin/emaillog run (not pg_ctl -D /var/lib/emaillog/pg, say)
        if b"buildah" in argv[0] or not any(a.endswith(b"bin/emaillog") for a in argv[:2]):
            continue
        found.append(pid)
    return max(found) if found else None  # a python started by a wrapper: the later pid


def leftover_postgres(rootfs: Path) -> int | None:
    """The embedded PostgreSQL still running on the container's data directory, if any
    (matched by the inode of its working directory, which is the data directory)."""
    pgdata = rootfs / "var/lib/emaillog/pg"
    pidfile = pgdata / "postmaster.pid"
    try:
        pid = int(pidfile.read_text().split()[0])
        ours = pgdata.stat()
        theirs = os.stat(f"/proc/{pid}/cwd")
    except (OSError, ValueError, IndexError):
        return None
    if (ours.st_dev, ours.st_ino) == (theirs.st_dev, theirs.st_ino):
        return pid
    return None


class Background:
    """A process of ours with its output in a file."""

    def __init__(self, name: str, argv: list[str], logfile: Path) -> None:
        self.name = name
        self.logfile = logfile
        self._out = logfile.open("wb")
        self.process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=self._out, stderr=subprocess.STDOUT
        )

    def output(self) -> str:
        if not self._out.closed:
            self._out.flush()
        return self.logfile.read_text(errors="replace")

    def alive(self) -> None:
        if self.process.poll() is not None:
            raise Failure(
                f"{self.name} exited {self.process.returncode} unexpectedly:\n"
                + tail(self.output())
            )

    def stop(self, pid: int | None = None, grace: float = 30.0) -> None:
        """SIGTERM (pid, else our process), then SIGKILL after `grace` seconds."""
        if self.process.poll() is None:
            target = pid or self.process.pid
            try:
                os.kill(target, signal.SIGTERM)
                self.process.wait(timeout=grace)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                if pid:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                self.process.kill()
                self.process.wait(timeout=30)
        self._out.close()


# --- the test --------------------------------------------------------------------------------


class ImageTest:
    def __init__(self, context: Path, keep: bool) -> None:
        self.context = context
        self.keep = keep
        suffix = f"{os.getpid()}-{secrets.token_hex(3)}"
        self.image = f"{IMAGE_REPOSITORY}:{suffix}"
        self.container_name = f"emaillog-container-test-{suffix}"
        self.container: str | None = None
        self.base = ""
        self.rootfs: Path | None = None
        self.work = Path(tempfile.mkdtemp(prefix="emaillog-container-test-"))
        self.sim: Background | None = None
        self.service: Background | None = None
        self.service_env: list[str] = []
        self.report: list[str] = []
        self.notes: list[str] = []

    # buildah run inside the container, as the image's user
    def inside(
        self,
        *argv: str,
        env: Sequence[str] = (),
        volumes: Sequence[str] = (),
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess[str]:
        assert self.container
        command = ["buildah", "run", "--isolation", "chroot", "--user", USER]
        for setting in env:
            command += ["--env", setting]
        for volume in volumes:
            command += ["--volume", volume]
        command += [self.container, "--", *argv]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout)

    def inside_ok(self, *argv: str, **kwargs: Any) -> str:
        result = self.inside(*argv, **kwargs)
        if result.returncode != 0:
            raise Failure(
                f"`{' '.join(argv)}` in the image exited {result.returncode}:\n"
                + tail(result.stdout + result.stderr)
            )
        return result.stdout

    def remove_stale(self) -> None:
        """Images (and their containers) this test left behind in a run that was killed."""
        listed = json.loads(buildah("images", "--json") or "[]") or []
        now = time.time()
        stale = {
            image["id"]
            for image in listed
            if any(n.startswith(IMAGE_REPOSITORY + ":") for n in image.get("names") or [])
            and now - float(image.get("created", now)) > STALE_SECONDS
        }
        if not stale:
            return
        containers = json.loads(buildah("containers", "--json") or "[]") or []
        for container in containers:
            if any(container.get("imageid", "").startswith(i) for i in stale):
                subprocess.run(["buildah", "rm", container["id"]], capture_output=True, timeout=120)
        for image in stale:
            subprocess.run(["buildah", "rmi", "--force", image], capture_output=True, timeout=120)
        log(f"removed {len(stale)} image(s) left over by earlier killed runs")

    def build(self) -> None:
        dockerfile = self.context / "Dockerfile"
        bases = dockerfile_bases(dockerfile)
        if len(bases) != 1:
            raise Failure(f"the Dockerfile starts FROM {sorted(bases)}: expected one base image")
        (base,) = bases
        started = time.monotonic()
        self.base = standin_base.ensure(base)
        self.report.append(f"stand-in base ready in {time.monotonic() - started:.0f} s")
        if not Path(CA_BUNDLE).is_file():
            raise Failure(f"{CA_BUNDLE}: the machine's CA bundle is missing")
        conf = self.work / "pip.conf"
        conf.write_text(pip_conf())
        conf.chmod(0o644)
        log(f"building {dockerfile} (isolation chroot) as {self.image}")
        started = time.monotonic()
        build_log = self.work / "build.log"
        with build_log.open("wb") as out:
            try:
                result = subprocess.run(
                    [
                        "buildah",
                        "bud",
                        "--isolation",
                        "chroot",
                        "--pull=never",
                        "--format",
                        "docker",  # keeps HEALTHCHECK (the OCI format has no field for it)
                        "--volume",
                        f"{CA_DIR}:{CA_DIR}:ro",
                        "--volume",
                        f"{conf}:/etc/pip.conf:ro",
                        "--file",
                        str(dockerfile),
                        "--tag",
                        self.image,
                        str(self.context),
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=BUILD_TIMEOUT,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                raise Failure(
                    f"the build took longer than {BUILD_TIMEOUT:.0f} s:\n"
                    + tail(build_log.read_text(errors="replace"))
                ) from None
        if result.returncode != 0:
            raise Failure(
                f"the build failed (exit {result.returncode}):\n"
                + tail(build_log.read_text(errors="replace"), 80)
            )
        self.report.append(f"image built in {time.monotonic() - started:.0f} s")
        self.container = buildah(
            "from", "--pull=never", "--name", self.container_name, self.image
        ).strip()
        self.rootfs = Path(buildah("mount", self.container).strip())

    def check_contents(self) -> None:
        """No compiler, no pip cache, no source tree; the package installed, not linked."""
        assert self.rootfs
        root = self.rootfs
        problems: list[str] = []
        for directory in ("usr/bin", "usr/local/bin", "bin", "opt/venv/bin"):
            for name in COMPILERS:
                if (root / directory / name).exists():
                    problems.append(f"compiler /{directory}/{name}")
        problems += [f"compiler /{p.relative_to(root)}" for p in root.glob("usr/lib/gcc/*/*/cc1")]
        skip = {root / "proc", root / "sys", root / "dev"}
        site_packages = sorted(root.glob("opt/venv/lib/python3*/site-packages"))
        if not site_packages:
            problems.append("no /opt/venv/lib/python3*/site-packages")
        for dirpath, dirnames, filenames in os.walk(root):
            here = Path(dirpath)
            dirnames[:] = [d for d in dirnames if here / d not in skip]
            relative = "/" + str(here.relative_to(root)).lstrip(".")
            if here.name == "pip" and here.parent.name == ".cache":
                problems.append(f"pip cache {relative}")
            installed = any(here.parent == sp for sp in site_packages)
            if here.name == "pipeline" and "service.py" in filenames and not installed:
                problems.append(f"source tree {relative}")
            if "pyproject.toml" in filenames and (here / "pipeline").is_dir():
                problems.append(f"source tree {relative}")
            for name in filenames:
                if name.startswith("__editable__") or name.endswith(".egg-link"):
                    problems.append(f"editable install {relative}/{name}")
        for path in ("src", "root/.cache/pip", "tmp/pip-install"):
            if (root / path).exists():
                problems.append(f"/{path} exists")
        if problems:
            raise Failure("the runtime image holds what it should not:\n  " + "\n  ".join(problems))
        size = buildah("images", "--noheading", "--format", "{{.Size}}", self.image).strip()
        base_size = subprocess.run(
            ["buildah", "images", "--noheading", "--format", "{{.Size}}", self.base],
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout.strip()
        venv = sum(
            f.stat().st_size
            for f in (root / "opt/venv").rglob("*")
            if f.is_file() and not f.is_symlink()
        )
        self.report.append(
            f"image size {size} (the stand-in base {base_size or '?'}; "
            f"/opt/venv {venv / 1e6:.0f} MB)"
        )
        log("runtime image: no compiler, no pip cache, no source tree")

    def check_cli(self) -> None:
        pyproject = tomllib.loads((self.context / "pyproject.toml").read_text())
        version = pyproject["project"]["version"]
        out = self.inside_ok("emaillog", "--version").strip()
        if version not in out:
            raise Failure(f"emaillog --version printed {out!r}, expected version {version}")
        help_text = self.inside_ok("emaillog", "--help")
        for command in ("run", "directory"):
            if command not in help_text:
                raise Failure(f"emaillog --help does not mention {command!r}:\n{help_text}")
        whoami = self.inside_ok("id", "-u").strip()
        if whoami != USER.split(":")[0]:
            raise Failure(f"commands ran as uid {whoami}, not {USER}")
        log(f"as uid {whoami}: `emaillog --version` -> {out!r}; `emaillog --help` lists run")

    def import_directory(self) -> None:
        directory = self.work / "directory"
        directory.mkdir()
        for name, text in DIRECTORY_CSV.items():
            (directory / name).write_text(text)
            (directory / name).chmod(0o644)
        directory.chmod(0o755)
        self.work.chmod(0o755)  # uid 10001 reads the mounted files
        out = self.inside_ok(
            "emaillog",
            "directory",
            "import",
            "--salespersons",
            "/import/salespersons.csv",
            "--contacts",
            "/import/contacts.csv",
            "--templates",
            "/import/templates.csv",
            volumes=[f"{directory}:/import:ro"],
            timeout=COMMAND_TIMEOUT,
        )
        log("directory imported in the image: " + "; ".join(out.strip().splitlines()))
        self.stop_leftover_postgres("after `directory import`")

    def stop_leftover_postgres(self, when: str) -> None:
        assert self.rootfs
        pid = leftover_postgres(self.rootfs)
        if pid is None:
            return
        self.notes.append(f"the embedded PostgreSQL was still running {when} (pid {pid})")
        try:
            os.kill(pid, signal.SIGTERM)  # smart shutdown
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            time.sleep(0.2)
        if Path(f"/proc/{pid}").exists():
            os.kill(pid, signal.SIGKILL)

    def start_sim(self) -> str:
        port = free_port()
        self.sim = Background(
            "exchange-sim",
            [
                sys.executable,
                "-m",
                "exchange_sim",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--mailbox",
                MAILBOX,
                "--folder",
                QUEUE,
                "--folder",
                STORAGE,
            ],
            self.work / "exchange-sim.log",
        )
        base = f"http://127.0.0.1:{port}"
        wait_for(
            "exchange-sim",
            lambda: http("GET", f"{base}/_sim/state")[0] == 200,
            30,
            self.sim.alive,
        )
        log(f"exchange-sim on the host at {base}")
        return base

    def folder(self, sim: str, path: str) -> list[dict[str, Any]]:
        query = urllib.parse.urlencode({"mailbox": MAILBOX, "folder": path})
        status, body = http("GET", f"{sim}/_sim/items?{query}")
        if status != 200:
            raise Failure(f"/_sim/items {path}: HTTP {status} {body[:200]!r}")
        items: list[dict[str, Any]] = json.loads(body)["items"]
        return items

    def healthcheck(self) -> subprocess.CompletedProcess[str]:
        inspected = json.loads(buildah("inspect", "--type", "image", self.image))
        check = (inspected.get("Docker", {}).get("config", {}) or {}).get("Healthcheck")
        if not check or not check.get("Test"):
            raise Failure("the built image has no HEALTHCHECK")
        test = check["Test"]
        if test[0] == "CMD":
            argv = test[1:]
        elif test[0] == "CMD-SHELL":
            argv = ["/bin/sh", "-c", test[1]]
        else:
            raise Failure(f"HEALTHCHECK {test!r}: not a command")
        timeout = check.get("Timeout", 30 * 10**9) / 1e9
        # buildah's own start-up (a second or so) on top of the check's timeout
        return self.inside(*argv, env=self.service_env, timeout=timeout + 30)

    def check_ui(self, ui: str, delivered: bytes) -> None:
        """The web UI in the image: a page (templates and static files are in the package),
        the entry in the API, and its stored copy fetched from the storage folder."""
        status, body = http("GET", f"{ui}/")
        if status != 200 or b"<html" not in body.lower():
            raise Failure(f"the UI's home page: HTTP {status} {body[:300]!r}")
        status, body = http("GET", f"{ui}/static/style.css")
        if status != 200:
            raise Failure(f"the UI's stylesheet: HTTP {status}")
        status, body = http("GET", f"{ui}/api/v1/entries")
        entries = json.loads(body).get("entries") if status == 200 else None
        if not entries or len(entries) != 1:
            raise Failure(f"/api/v1/entries: HTTP {status} {body[:300]!r}")
        status, body = http("GET", entries[0]["stored_message"]["mime_url"])
        if status != 200 or body != delivered:
            raise Failure(f"the stored message's MIME: HTTP {status} {body[:300]!r}")
        log("the web UI serves its pages, the entry and the stored message (byte for byte)")

    def run_service(self) -> None:
        assert self.rootfs
        sim = self.start_sim()
        port, ui_port = free_port(), free_port()
        self.service_env = [
            f"EMAILLOG_EWS_URL={sim}/EWS/Exchange.asmx",
            f"EMAILLOG_EWS_MAILBOX={MAILBOX}",
            "EMAILLOG_EWS_AUTH=none",
            f"EMAILLOG_QUEUE_FOLDER={QUEUE}",
            f"EMAILLOG_STORAGE_FOLDER={STORAGE}",
            "EMAILLOG_HTTP_HOST=127.0.0.1",  # the host's network: not on every interface
            f"EMAILLOG_HTTP_PORT={port}",
            f"EMAILLOG_DRAIN_TIMEOUT_SECONDS={DRAIN_SECONDS}",
            # The web UI without sign-in: allowed on loopback only, enough to see it served.
            "EMAILLOG_UI_HOST=127.0.0.1",
            f"EMAILLOG_UI_PORT={ui_port}",
            "EMAILLOG_UI_AUTH=none",
        ]
        command = ["buildah", "run", "--isolation", "chroot", "--user", USER]
        for setting in self.service_env:
            command += ["--env", setting]
        command += [self.container or "", "--", "emaillog", "run"]
        self.service = Background("emaillog run", command, self.work / "service.log")
        service = self.service
        url = f"http://127.0.0.1:{port}"
        started = time.monotonic()

        def ready() -> bool:
            status, body = http("GET", f"{url}/readyz", timeout=5)
            return status == 200 and json.loads(body).get("status") == "ready"

        wait_for("/readyz to answer 200 ready", ready, READY_TIMEOUT, service.alive)
        self.report.append(f"service ready in {time.monotonic() - started:.1f} s")
        log(f"`emaillog run` in the image is ready ({url}/readyz)")

        message_id = f"<container-test-{secrets.token_hex(8)}@ourco.example>"
        query = urllib.parse.urlencode({"mailbox": MAILBOX, "folder": QUEUE})
        status, body = http("POST", f"{sim}/_sim/deliver?{query}", message(message_id))
        if status != 200:
            raise Failure(f"/_sim/deliver: HTTP {status} {body[:300]!r}")

        expected = {
            'emaillog_messages_total{outcome="logged"}': 1.0,
            "emaillog_interactions_logged_total": 1.0,
        }

        def counted() -> dict[str, float | None]:
            status, body = http("GET", f"{url}/metrics")
            text = body.decode(errors="replace") if status == 200 else ""
            values: dict[str, float | None] = {}
            for name in expected:
                found = re.search(rf"^{re.escape(name)} (\S+)$", text, flags=re.MULTILINE)
                values[name] = float(found.group(1)) if found else None
            return values

        def disposed() -> list[dict[str, Any]]:
            return [
                line
                for line in self.json_lines(service.output())
                if line.get("event") == "disposed" and line.get("outcome") == "logged"
            ]

        def processed() -> bool:
            # The move shows in the simulator first; the service then links the stored copy,
            # logs `disposed` and counts it: wait for all of it.
            stored = [i for i in self.folder(sim, STORAGE) if i["message_id"] == message_id]
            if len(stored) != 1 or self.folder(sim, QUEUE):
                return False
            return bool(disposed()) and counted() == expected

        try:
            wait_for("the message to be logged", processed, PROCESSED_TIMEOUT, service.alive)
        except Failure as exc:
            try:
                seen = (
                    f"storage {self.folder(sim, STORAGE)}, queue {self.folder(sim, QUEUE)}, "
                    f"metrics {counted()}, disposed lines {disposed()}"
                )
            except Exception as inner:
                seen = f"(state unreadable: {inner!r})"
            raise Failure(f"{exc}: {seen}") from None
        lines = disposed()
        if len(lines) != 1 or lines[0].get("entries") != 1:
            raise Failure(f"expected one `disposed` line, logged with 1 entry: {lines}")
        log("a delivered message was logged, moved to storage and counted in /metrics")
        self.check_ui(f"http://127.0.0.1:{ui_port}", message(message_id))

        check = self.healthcheck()
        if check.returncode != 0:
            raise Failure(
                f"the HEALTHCHECK command failed (exit {check.returncode}) while the service "
                f"runs:\n{check.stdout}{check.stderr}"
            )
        log("the image's HEALTHCHECK command succeeds while the service runs")

        pid = service_pid(service.process.pid)
        if pid is None:
            raise Failure("cannot find the emaillog process under `buildah run`")
        os.kill(pid, signal.SIGTERM)
        stopping = time.monotonic()
        try:
            code = service.process.wait(timeout=EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise Failure(
                f"the service did not exit within {EXIT_TIMEOUT:.0f} s of SIGTERM:\n"
                + tail(service.output())
            ) from None
        if code != 0:
            raise Failure(f"after SIGTERM the service exited {code}:\n" + tail(service.output()))
        events = [str(line.get("event", "")) for line in self.json_lines(service.output())]
        if not any("drain" in event for event in events):
            raise Failure("no drain logged after SIGTERM:\n" + tail(service.output()))
        self.report.append(f"SIGTERM to exit 0 in {time.monotonic() - stopping:.1f} s")
        log("SIGTERM: the service drained and exited 0")
        self.stop_leftover_postgres("after the service exited")

        after = self.healthcheck()
        if after.returncode == 0:
            raise Failure("the HEALTHCHECK command still succeeds with the service stopped")
        log("the HEALTHCHECK command fails once the service is gone")

    @staticmethod
    def json_lines(text: str) -> list[dict[str, Any]]:
        lines = []
        for raw in text.splitlines():
            if raw.startswith("{"):
                with contextlib.suppress(ValueError):
                    lines.append(json.loads(raw))
        return lines

    def cleanup(self, failed: bool) -> None:
        """Every step is tried, whatever the ones before it did."""

        def attempt(what: str, step: Callable[[], object]) -> None:
            try:
                step()
            except Exception as exc:
                log(f"clean-up: {what}: {exc!r}")

        def stop_service() -> None:
            if self.service is not None:
                running = self.service.process.poll() is None
                self.service.stop(service_pid(self.service.process.pid) if running else None)

        attempt("stopping the service", stop_service)
        if self.rootfs is not None:
            attempt("stopping PostgreSQL", lambda: self.stop_leftover_postgres("at clean-up"))
        if self.sim is not None:
            attempt("stopping exchange-sim", self.sim.stop)
        if failed:
            for background in (self.service, self.sim):
                if background is not None:
                    print(f"----- {background.name} output (last lines) -----")
                    attempt("output", lambda b=background: print(tail(b.output(), 80)))
        if self.keep:
            log(f"kept image {self.image}, container {self.container_name}, files {self.work}")
            return
        if self.container is not None:
            container = self.container
            attempt("removing the container", lambda: buildah("rm", container))
        if self.container is not None or not failed:
            attempt("removing the image", lambda: buildah("rmi", self.image))
        else:  # the build may have failed before tagging: nothing to remove then
            subprocess.run(["buildah", "rmi", self.image], capture_output=True, timeout=120)
        shutil.rmtree(self.work, ignore_errors=True)

    def run(self) -> None:
        started = time.monotonic()
        failed = True
        try:
            self.remove_stale()
            self.build()
            self.check_contents()
            self.check_cli()
            self.import_directory()
            self.run_service()
            failed = False
        finally:
            self.cleanup(failed)
        self.report.append(f"total {time.monotonic() - started:.0f} s")
        for line in self.report:
            log(f"summary: {line}")
        for note in self.notes:
            log(f"summary: note: {note}")


def preflight() -> None:
    problems = []
    if os.geteuid() != 0:
        problems.append("must run as root (buildah's storage, debootstrap)")
    for tool in ("buildah", "debootstrap"):
        if shutil.which(tool) is None:
            problems.append(
                f"{tool} is missing: `make container-tools` installs it (root, apt-get)"
            )
    if problems:
        raise Failure("; ".join(problems))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--context", type=Path, default=REPO, help="build context (the repo)")
    parser.add_argument("--keep", action="store_true", help="keep the image and container")
    args = parser.parse_args(argv)

    def terminated(signum: int, frame: object) -> None:
        raise Failure(f"terminated by signal {signum}")  # so that the clean-up runs

    signal.signal(signal.SIGTERM, terminated)
    try:
        preflight()
        ImageTest(args.context.resolve(), args.keep).run()
    except (Failure, standin_base.StandinError, subprocess.TimeoutExpired) as exc:
        log(f"FAILED: {exc}")
        return 1
    log("PASSED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
