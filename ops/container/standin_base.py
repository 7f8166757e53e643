"""A stand-in for the Dockerfile's base image, built with debootstrap and cached.

No image can be pulled here (only the package registries are reachable), so the container
test builds what `python:3.11-slim` provides from Debian's packages: a minimal Debian
(`debootstrap --variant=minbase`) of the release whose python3 is 3.11 (bookworm) with
python3, python3-venv, python-is-python3 and ca-certificates. It is imported into buildah's
storage under the Dockerfile's base name (docker.io/library/python:3.11-slim), labelled with
a key of its recipe and mirror, so that the Dockerfile builds unchanged.

The Debian mirror is read from this machine's apt configuration (/etc/apt/sources.list and
/etc/apt/sources.list.d/*.list / *.sources), never written down here.

Cached twice: the image in buildah's storage (/var/lib/containers) and its root file system
as a tar file under CONTAINER_TEST_CACHE (default /var/cache/emaillog-container), so a
machine builds it once; a new recipe or mirror gives a new key and a rebuild.

    python ops/container/standin_base.py python:3.11-slim     # ensure it, print its name
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

CACHE_DIR = Path(os.environ.get("CONTAINER_TEST_CACHE", "/var/cache/emaillog-container"))
#: Bump when the recipe below changes: the key changes and the base is built again.
RECIPE_VERSION = 1
PACKAGES = ("python3", "python3-venv", "python-is-python3", "ca-certificates")
#: The Debian release whose python3 is the base tag's Python (the official python:X.Y-slim
#: images of these versions are Debian bookworm too).
DEBIAN_RELEASE_FOR_PYTHON = {"3.11": "bookworm"}
LABEL = "org.emaillog.standin.key"
DEBOOTSTRAP_TIMEOUT_SECONDS = 1200
#: The build mounts the machine's pip settings on /etc/pip.conf (see image_test.py). buildah
#: creates a missing mount point in every stage's image, so the base has the file already and
#: the image under test holds nothing the Dockerfile did not put there.
PIP_CONF_PLACEHOLDER = (
    "# Stand-in base for the emaillog container test: the build mounts the machine's pip\n"
    "# settings over this file (registry access through the machine's CA bundle).\n"
)
HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"


class StandinError(RuntimeError):
    pass


@dataclass(frozen=True)
class AptSource:
    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]
    keyring: str | None


def log(message: str) -> None:
    print(f"container-test: {message}", flush=True)


# --- the machine's apt configuration -------------------------------------------------------


def _one_line_sources(text: str) -> Iterator[AptSource]:
    """`deb [options] URI SUITE COMPONENT...` lines of a sources.list file."""
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        options: dict[str, str] = {}
        match = re.match(r"deb\s+\[([^\]]*)\]\s+(.*)", line)
        if match:
            for option in match.group(1).split():
                key, _, value = option.partition("=")
                options[key.lower()] = value
            words = match.group(2).split()
        else:
            words = line.split()[1:]
        if len(words) >= 2:
            yield AptSource(
                uri=words[0],
                suites=(words[1],),
                components=tuple(words[2:]),
                keyring=options.get("signed-by"),
            )


def _deb822_sources(text: str) -> Iterator[AptSource]:
    """Stanzas of a deb822 .sources file (continuation lines are skipped: they only occur in
    inline keys, which debootstrap cannot use anyway)."""
    stanzas: list[dict[str, str]] = [{}]
    for raw in text.splitlines():
        if raw.startswith("#"):
            continue
        if not raw.strip():
            stanzas.append({})
            continue
        if raw[0] in " \t":
            continue
        key, _, value = raw.partition(":")
        stanzas[-1][key.strip().lower()] = value.strip()
    for stanza in stanzas:
        if "deb" not in stanza.get("types", "").split():
            continue
        if stanza.get("enabled", "yes").lower() == "no":
            continue
        keyring = stanza.get("signed-by") or None
        if keyring and not keyring.startswith("/"):
            keyring = None  # an inline key
        for uri in stanza.get("uris", "").split():
            yield AptSource(
                uri=uri,
                suites=tuple(stanza.get("suites", "").split()),
                components=tuple(stanza.get("components", "").split()),
                keyring=keyring,
            )


def apt_sources(root: Path = Path("/etc/apt")) -> list[AptSource]:
    sources: list[AptSource] = []
    files = [root / "sources.list", *sorted((root / "sources.list.d").glob("*"))]
    for path in files:
        if not path.is_file():
            continue
        if path.name.endswith(".list"):
            sources += _one_line_sources(path.read_text(errors="replace"))
        elif path.name.endswith(".sources"):
            sources += _deb822_sources(path.read_text(errors="replace"))
    return sources


def host_codename() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("VERSION_CODENAME="):
                return line.partition("=")[2].strip().strip('"')
    return ""


def debian_mirror() -> AptSource:
    """The machine's Debian archive: the source that serves the machine's own release (so
    not a third-party repository) with component main."""
    codename = host_codename()
    candidates = [s for s in apt_sources() if "main" in s.components]
    for source in candidates:
        if codename and codename in source.suites:
            return source
    raise StandinError(
        f"no Debian mirror for {codename or 'this release'} with component main in "
        "/etc/apt/sources.list or /etc/apt/sources.list.d/ (*.list, *.sources)"
    )


# --- the base ------------------------------------------------------------------------------


def python_version_of(base: str) -> str:
    match = re.fullmatch(r"(?:docker\.io/)?(?:library/)?python:(\d+\.\d+)(?:-slim)?", base)
    if not match or match.group(1) not in DEBIAN_RELEASE_FOR_PYTHON:
        raise StandinError(
            f"no stand-in recipe for base image {base!r}: known are python:X.Y-slim for "
            f"X.Y in {sorted(DEBIAN_RELEASE_FOR_PYTHON)}"
        )
    return match.group(1)


def full_name(base: str) -> str:
    """buildah's name for a short Docker Hub reference (how FROM resolves it)."""
    name = base if ":" in base.split("/")[-1] else base + ":latest"
    if "/" not in name:
        name = "library/" + name
    if not re.match(r"^[^/]+\.[^/]+/", name) and not name.startswith("localhost/"):
        name = "docker.io/" + name
    return name


def run(argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise StandinError(
            f"{' '.join(argv[:3])} ... exited {result.returncode}:\n"
            + (result.stdout + result.stderr)[-4000:]
        )
    return result


def image_labels(name: str) -> dict[str, str] | None:
    result = subprocess.run(
        ["buildah", "inspect", "--type", "image", name],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        return None
    config = json.loads(result.stdout).get("OCIv1", {}).get("config", {})
    return dict(config.get("Labels") or {})


def image_id(name: str) -> str | None:
    result = subprocess.run(
        ["buildah", "images", "--noheading", "--no-trunc", "--format", "{{.ID}}", name],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    lines = result.stdout.split()
    return lines[0] if result.returncode == 0 and lines else None


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """One builder at a time per machine (two test runs may start together)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def recipe_key(release: str, source: AptSource) -> str:
    recipe = {
        "version": RECIPE_VERSION,
        "release": release,
        "mirror": source.uri,
        "keyring": source.keyring,
        "packages": PACKAGES,
        "pip_conf": PIP_CONF_PLACEHOLDER,
        "arch": os.uname().machine,
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def debootstrap_tar(release: str, source: AptSource, tar: Path) -> None:
    """debootstrap into a temporary directory, trim it like a slim image, tar it."""
    root_parent = Path(tempfile.mkdtemp(prefix="standin-", dir=CACHE_DIR))
    root = root_parent / "root"
    try:
        argv = [
            "debootstrap",
            "--variant=minbase",
            "--include=" + ",".join(PACKAGES),
            "--components=main",
        ]
        if source.keyring and Path(source.keyring).is_file():
            argv.append(f"--keyring={source.keyring}")
        argv += [release, str(root), source.uri]
        log(f"debootstrap {release} from the machine's Debian mirror (about a minute)")
        started = time.monotonic()
        run(argv, timeout=DEBOOTSTRAP_TIMEOUT_SECONDS)
        log(f"debootstrap done in {time.monotonic() - started:.0f} s")
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for entry in (root / leftover).glob("*"):
                if entry.is_file():
                    entry.unlink()
        (root / "etc/pip.conf").write_text(PIP_CONF_PLACEHOLDER)
        (root / "etc/hosts").write_text(HOSTS)
        partial = tar.with_suffix(".partial")
        run(["tar", "-C", str(root), "--numeric-owner", "-cf", str(partial), "."], timeout=600)
        partial.rename(tar)
    finally:
        shutil.rmtree(root_parent, ignore_errors=True)


def import_tar(tar: Path, name: str, key: str, python: str) -> None:
    previous = image_id(name)
    container = run(["buildah", "from", "scratch"], timeout=120).stdout.strip()
    try:
        mount = run(["buildah", "mount", container], timeout=120).stdout.strip()
        run(["tar", "-C", mount, "--numeric-owner", "-xpf", str(tar)], timeout=600)
        run(["buildah", "umount", container], timeout=120)
        run(
            [
                "buildah",
                "config",
                "--env",
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "--env",
                "LANG=C.UTF-8",
                "--cmd",
                '["python3"]',
                "--label",
                f"{LABEL}={key}",
                "--label",
                f"org.emaillog.standin.for=python:{python}-slim",
                container,
            ],
            timeout=120,
        )
        run(["buildah", "commit", "--quiet", "--rm", container, name], timeout=600)
    except BaseException:
        subprocess.run(["buildah", "rm", container], capture_output=True, timeout=120)
        raise
    if previous and previous != image_id(name):
        # The old stand-in, now untagged; kept if a container still uses it.
        subprocess.run(["buildah", "rmi", previous], capture_output=True, timeout=120)


def check_python(name: str, python: str) -> None:
    container = run(["buildah", "from", "--pull=never", name], timeout=120).stdout.strip()
    try:
        out = run(
            ["buildah", "run", "--isolation", "chroot", container, "--", "python", "--version"],
            timeout=120,
        ).stdout
    finally:
        subprocess.run(["buildah", "rm", container], capture_output=True, timeout=120)
    if not out.startswith(f"Python {python}."):
        raise StandinError(f"the stand-in for python:{python}-slim runs {out.strip()!r}")


def ensure(base: str) -> str:
    """Make `base` (e.g. python:3.11-slim) resolvable from buildah's storage; return its
    full name."""
    python = python_version_of(base)
    release = DEBIAN_RELEASE_FOR_PYTHON[python]
    name = full_name(base)
    source = debian_mirror()
    key = recipe_key(release, source)
    with locked(CACHE_DIR / "standin.lock"):
        labels = image_labels(name)
        if labels is not None and labels.get(LABEL) == key:
            log(f"stand-in base {name} is cached (key {key})")
            return name
        tar = CACHE_DIR / f"standin-{release}-{key}.tar"
        if tar.is_file():
            log(f"importing the cached stand-in root file system {tar}")
        else:
            for old in CACHE_DIR.glob("standin-*.tar"):
                old.unlink()
            debootstrap_tar(release, source, tar)
        import_tar(tar, name, key, python)
        check_python(name, python)
        log(f"stand-in base {name} ready (key {key})")
    return name


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        print(ensure(argv[1]))
    except (StandinError, subprocess.TimeoutExpired) as exc:
        print(f"container-test: stand-in base: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
