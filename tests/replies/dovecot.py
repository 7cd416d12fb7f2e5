"""A real Dovecot IMAP server on loopback for tests: its own config, a Maildir, one user.

Started from ``/usr/sbin/dovecot`` (Debian's dovecot-imapd) with a config written to a
temporary folder: listeners on free 127.0.0.1 ports (IMAPS, and IMAP with STARTTLS), a
certificate from a trustme CA, TLS 1.2 or later, plaintext login only over TLS, and one user
from a passwd-file whose Maildir the test fills by writing files into ``new/``.

Runs as root or as an ordinary user. As root, Dovecot's login processes must not run as
root and mail must not be owned by uid 0, so they run as Debian's ``dovenull`` / ``dovecot``
users (or ``nobody``) and the Maildir is given to the mail user; as an ordinary user,
everything runs as that user.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import trustme

DOVECOT = Path("/usr/sbin/dovecot")
USER = "replies"
PASSWORD = "imap-password-never-logged"


@dataclass
class Dovecot:
    """A running Dovecot and where its parts are."""

    root: Path
    tls_port: int
    starttls_port: int
    ca_file: Path
    maildir: Path
    uid: int
    gid: int
    process: subprocess.Popen[bytes] | None = None

    def deliver(self, data: bytes, name: str | None = None, *, mtime: float | None = None) -> Path:
        """Deliver one message, as an MDA would: a file in new/ (its time is the arrival)."""
        name = name or f"{time.time_ns()}.M{os.getpid()}P{len(list(self.maildir.glob('*/*')))}.test"
        tmp = self.maildir / "tmp" / name
        tmp.write_bytes(data)
        os.chown(tmp, self.uid, self.gid)
        if mtime is not None:
            os.utime(tmp, (mtime, mtime))
        final = self.maildir / "new" / name
        os.replace(tmp, final)
        return final

    def flags(self) -> list[str]:
        """The Maildir flags of every message (``S`` means seen)."""
        found = []
        for path in sorted((self.maildir / "cur").iterdir()):
            found.append(path.name.partition(":2,")[2])
        for _ in (self.maildir / "new").iterdir():
            found.append("")
        return found

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _user(name: str, fallback: str = "nobody") -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return pwd.getpwnam(fallback)


def start(ca: trustme.CA, *, cert_host: str = "127.0.0.1") -> Dovecot:
    """Start a Dovecot; raise RuntimeError (with its log) when it cannot be started."""
    if not DOVECOT.exists():
        raise RuntimeError(f"{DOVECOT} is not installed (apt-get install dovecot-imapd)")
    root = Path(tempfile.mkdtemp(prefix="mash-dovecot-"))
    root.chmod(0o755)  # the mail and login users must reach their parts
    if os.geteuid() == 0:
        login = _user("dovenull").pw_name
        internal = _user("dovecot").pw_name
        mail_user = _user("nobody")
        uid, gid = mail_user.pw_uid, mail_user.pw_gid
    else:
        me = pwd.getpwuid(os.geteuid())
        login = internal = me.pw_name
        uid, gid = me.pw_uid, me.pw_gid
    cert = ca.issue_cert(cert_host, "localhost")
    cert.private_key_pem.write_to_path(str(root / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(root / "cert.pem"))
    ca_file = root / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    home = root / "mail" / USER
    maildir = home / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    for path in (root / "mail", home, maildir, *(maildir / s for s in ("cur", "new", "tmp"))):
        os.chown(path, uid, gid)
    (root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}:{uid}:{gid}::{home}::\n")
    tls_port, starttls_port = _free_port(), _free_port()
    (root / "dovecot.conf").write_text(
        f"""
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <{root}/cert.pem
ssl_key = <{root}/key.pem
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
auth_mechanisms = plain login
default_internal_user = {internal}
default_internal_group = {grp.getgrgid(pwd.getpwnam(internal).pw_gid).gr_name}
default_login_user = {login}
first_valid_uid = {min(uid, 500)}
first_valid_gid = 0
mail_location = maildir:~/Maildir
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {root}/passwd
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {starttls_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
    ssl = yes
  }}
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0600
  }}
  unix_listener stats-writer {{
    mode = 0600
  }}
}}
"""
    )
    server = Dovecot(root, tls_port, starttls_port, ca_file, maildir, uid, gid)
    process = subprocess.Popen(
        [str(DOVECOT), "-F", "-c", str(root / "dovecot.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    server.process = process
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            error = process.stderr.read().decode(errors="replace") if process.stderr else ""
            stop(server)
            raise RuntimeError(f"dovecot exited: {error.strip()} {server.log()[-500:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", tls_port), 0.2):
            return server
        time.sleep(0.05)
    log = server.log()
    stop(server)
    raise RuntimeError(f"dovecot did not listen within 15 s: {log[-500:]}")


def stop(server: Dovecot) -> None:
    """Stop the server and remove its folder."""
    process = server.process
    if process is not None and process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process is not None and process.stderr is not None:
        process.stderr.close()
    shutil.rmtree(server.root, ignore_errors=True)
