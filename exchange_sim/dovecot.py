"""A real Dovecot for the tests, `emaillog demo --source imap` and the IMAP benchmark:
Debian's dovecot-imapd, started unprivileged with a configuration generated in a directory.

    with Dovecot.start(tmp_path) as server:     passwd-file users, Maildir, IDLE, MOVE,
        server.port / tls_port / lmtp_port        UIDPLUS, SPECIAL-USE \\Trash, TLS with a
        server.ca_file                            certificate generated for the run
        server.append(USER, "Email Logging/Queue", raw, flags=())  -> UID (APPENDUID)
        server.uids(USER, folder)                 UIDs in a folder
        server.kill(); server.restart()           SIGKILL the whole server, start it again

`make test` installs the package when missing (root + apt-get); without it the tests fail
and say how to install it: never skipped. As root, Dovecot runs as `nobody` (its login
processes must not run as root); otherwise as the current user. The root directory must be
reachable by that user (a fresh `tempfile.TemporaryDirectory()` under /tmp is).
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

DOVECOT = "/usr/sbin/dovecot"
USER = "queue@example.com"
PASSWORD = "secret-imap"
#: A second user for tests that need someone else's mailbox.
OTHER_USER = "other@example.com"
FOLDERS = ("Email Logging/Queue", "Email Logging/Storage", "Email Logging/Audit")
START_WAIT_SECONDS = 20.0

CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
protocols = imap lmtp
listen = 127.0.0.1
default_internal_user = {user}
default_internal_group = {group}
default_login_user = {user}
ssl = yes
ssl_cert = <{root}/cert.pem
ssl_key = <{root}/key.pem
disable_plaintext_auth = no
auth_failure_delay = 0
auth_mechanisms = plain login{oauth2_mechanisms}
mail_location = maildir:{root}/mail/%n:LAYOUT=fs
mail_uid = {uid}
mail_gid = {gid}
first_valid_uid = 0
first_valid_gid = 0
imap_idle_notify_interval = 2 mins
namespace inbox {{
  inbox = yes
  separator = {separator}
  prefix = {prefix}
  mailbox Trash {{
    special_use = \\Trash
    auto = create
  }}
{mailboxes}
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
{oauth2_passdb}userdb {{
  driver = passwd-file
  args = username_format=%u {root}/passwd
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
    ssl = yes
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp_port}
  }}
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0666
  }}
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
"""


def missing_message() -> str:
    return (
        f"{DOVECOT} is missing: run `make test` as root (it installs Debian's dovecot-imapd "
        "and dovecot-lmtpd), or `apt-get install dovecot-imapd dovecot-lmtpd`"
    )


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports (held together while chosen, so never the same twice)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]


def make_certificate(root: Path, host: str = "localhost") -> None:
    """A self-signed certificate for `host` (also 127.0.0.1): ca_file is the cert itself."""
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", f"/CN={host}", "-addext", f"subjectAltName=DNS:{host},IP:127.0.0.1",
            "-keyout", str(root / "key.pem"), "-out", str(root / "cert.pem"),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip


class Dovecot:
    def __init__(self, root: Path, oauth2_introspection_url: str = "") -> None:
        #: With a URL: XOAUTH2/OAUTHBEARER too, tokens checked by POSTing them there
        #: (RFC 7662 introspection: {"active": true, "username": ...}).
        self.oauth2_introspection_url = oauth2_introspection_url
        self.root = root
        self.port, self.tls_port, self.lmtp_port = free_ports(3)
        self.process: subprocess.Popen[bytes] | None = None
        self.ca_file = str(root / "cert.pem")
        self.user, self.password = USER, PASSWORD
        self.separator = "/"
        self.prefix = ""
        if os.geteuid() == 0:
            entry = pwd.getpwnam("nobody")
            self.uid, self.gid = entry.pw_uid, entry.pw_gid
        else:
            self.uid, self.gid = os.getuid(), os.getgid()

    @classmethod
    @contextlib.contextmanager
    def start(
        cls,
        root: Path,
        folders: Sequence[str] = FOLDERS,
        oauth2_introspection_url: str = "",
        separator: str = "/",
        prefix: str = "",
    ) -> Iterator[Dovecot]:
        """`folders` are written with "/" and created with `separator` as the server's
        hierarchy delimiter, under the personal namespace `prefix` (e.g. "INBOX.")."""
        if not Path(DOVECOT).exists():
            raise RuntimeError(missing_message())
        server = cls(root, oauth2_introspection_url)
        server.separator, server.prefix = separator, prefix
        server.configure(folders)
        try:
            server.launch()
        except RuntimeError:  # a port taken meanwhile by someone else: once more, new ports
            server.kill()
            server.port, server.tls_port, server.lmtp_port = free_ports(3)
            server.configure(folders)
            server.launch()
        try:
            yield server
        finally:
            server.kill()

    def configure(self, folders: Sequence[str]) -> None:
        for sub in ("run", "state", "mail", "home"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        make_certificate(self.root)
        users = [USER, OTHER_USER]
        (self.root / "passwd").write_text(
            "".join(
                f"{u}:{{PLAIN}}{PASSWORD}:{self.uid}:{self.gid}::{self.root}/home/{u}::\n"
                for u in users
            )
        )
        mailboxes = "".join(
            # names within the namespace, without its prefix
            f'  mailbox "{self.name(name).removeprefix(self.prefix)}" {{\n    auto = create\n  }}\n'
            for name in folders
        )
        user = pwd.getpwuid(self.uid).pw_name
        group_name = _group_name(self.gid)
        (self.root / "dovecot.conf").write_text(
            CONFIG.format(
                root=self.root,
                user=user,
                group=group_name,
                uid=self.uid,
                gid=self.gid,
                port=self.port,
                tls_port=self.tls_port,
                lmtp_port=self.lmtp_port,
                mailboxes=mailboxes,
                separator=self.separator,
                prefix=self.prefix,
                **self._oauth2(),
            )
        )
        if os.geteuid() == 0:
            for path in [self.root, *self.root.rglob("*")]:
                os.chown(path, self.uid, self.gid)

    def name(self, folder: str) -> str:
        """The server's name of a folder written with "/"."""
        return self.prefix + folder.replace("/", self.separator)

    def _oauth2(self) -> dict[str, str]:
        if not self.oauth2_introspection_url:
            return {"oauth2_mechanisms": "", "oauth2_passdb": ""}
        conf = self.root / "oauth2.conf.ext"
        conf.write_text(
            "introspection_mode = post\n"
            f"introspection_url = {self.oauth2_introspection_url}\n"
            "username_attribute = username\n"
            "active_attribute = active\n"
            "active_value = true\n"
        )
        passdb = (
            "passdb {\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n"
            f"  args = {conf}\n}}\n"
        )
        return {"oauth2_mechanisms": " xoauth2 oauthbearer", "oauth2_passdb": passdb}

    def launch(self) -> None:
        def demote() -> None:
            if os.geteuid() == 0:
                os.setgid(self.gid)
                os.setgroups([])
                os.setuid(self.uid)

        self.process = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(self.root / "dovecot.conf")],
            preexec_fn=demote,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=open(self.root / "stderr.log", "ab"),  # noqa: SIM115
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        )
        deadline = time.monotonic() + START_WAIT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dovecot exited at start: {self.log_tail()}")
            try:
                with self.session():
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"dovecot did not start: {self.log_tail()}")

    def log_tail(self) -> str:
        text = ""
        for name in ("stderr.log", "dovecot.log"):
            path = self.root / name
            if path.exists():
                text += path.read_text(errors="replace")[-2000:]
        return text

    def kill(self) -> None:
        """SIGKILL the master and every Dovecot process it started (its session)."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.process = None
        # Processes outside the session (none expected) would keep the ports.
        shutil.rmtree(self.root / "run", ignore_errors=True)
        (self.root / "run").mkdir(exist_ok=True)
        if os.geteuid() == 0:
            os.chown(self.root / "run", self.uid, self.gid)

    def restart(self) -> None:
        self.kill()
        self.launch()

    # --- a plain client, as the rest of the world ---

    def connect(self, user: str = USER) -> imaplib.IMAP4:
        client = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        client.login(user, PASSWORD)
        return client

    @contextlib.contextmanager
    def session(self, user: str = USER) -> Iterator[imaplib.IMAP4]:
        client = self.connect(user)
        try:
            yield client
        finally:
            with contextlib.suppress(Exception):
                client.logout()

    def append(self, folder: str, raw: bytes, *, flags: str = "", user: str = USER) -> int:
        """APPEND `raw` into `folder`: the new UID (APPENDUID, RFC 4315)."""
        with self.session(user) as client:
            typ, data = client.append(_quote(self.name(folder)), flags and f"({flags})", None, raw)
            assert typ == "OK", data
            code = client.untagged_responses.pop("APPENDUID", [b""])[-1]
        assert isinstance(code, bytes), code
        return int(code.split()[1])

    def uids(self, folder: str, user: str = USER) -> list[int]:
        with self.session(user) as client:
            typ, _ = client.select(_quote(self.name(folder)), readonly=True)
            assert typ == "OK"
            typ, data = client.uid("SEARCH", "ALL")
        return [int(u) for u in data[0].split()]

    def uidvalidity(self, folder: str, user: str = USER) -> int:
        with self.session(user) as client:
            _, data = client.status(_quote(self.name(folder)), "(UIDVALIDITY)")
        return int(data[0].decode().rsplit("UIDVALIDITY", 1)[1].strip(" )"))

    def recreate(self, folder: str, user: str = USER) -> None:
        """Delete and create `folder` again, empty: it gets a new UIDVALIDITY."""
        with self.session(user) as client:
            client.delete(_quote(self.name(folder)))
            client.create(_quote(self.name(folder)))

    def tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_file)


def _quote(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _group_name(gid: int) -> str:
    import grp

    return grp.getgrgid(gid).gr_name
