"""A real Mosquitto broker for one test: its own folder, config, free loopback ports.

Optional: a password file (mosquitto_passwd), an ACL, a TLS listener with certificates made
here by openssl (a CA, and a server certificate for 127.0.0.1/localhost signed by it).
Persistence is on, so a stop and start (``restart``) keeps the sessions and the messages
queued for them, like a production broker. Stopped by its pid.
"""
import os
import socket
import subprocess
import time

from tests.helpers import free_port, stop_process

MOSQUITTO = "/usr/sbin/mosquitto"


def make_certificates(folder, server_names="IP:127.0.0.1,DNS:localhost"):
    """ca.crt, server.crt/key (for ``server_names``), client.crt/key; returns paths."""
    os.makedirs(folder, exist_ok=True)

    def run(*args):
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
        "-subj", "/CN=cancorder test CA")
    for name, extra in (("server", f"subjectAltName={server_names}"),
                        ("client", "extendedKeyUsage=clientAuth")):
        run("req", *key, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        with open(os.path.join(folder, f"{name}.ext"), "w") as handle:
            handle.write(extra + "\nauthorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext")
    return {name: os.path.join(folder, name) for name in
            ("ca.crt", "server.crt", "server.key", "client.crt", "client.key")}


class Mosquitto:
    def __init__(self, folder, users=None, acl=None, tls=False, require_certificate=False,
                 server_names="IP:127.0.0.1,DNS:localhost"):
        self.folder = str(folder)
        os.makedirs(os.path.join(self.folder, "data"), exist_ok=True)
        self.port = free_port()
        self.tls_port = free_port() if tls else None
        self.certs = make_certificates(os.path.join(self.folder, "certs"), server_names) \
            if tls else None
        self.log_path = os.path.join(self.folder, "mosquitto.log")
        self.proc = None
        lines = ["user root", "per_listener_settings false", "persistence true",
                 f"persistence_location {self.folder}/data/", "max_queued_messages 0",
                 "max_inflight_messages 0", "log_type all", f"log_dest file {self.log_path}",
                 f"listener {self.port} 127.0.0.1"]
        if users:
            password_file = os.path.join(self.folder, "passwords")
            open(password_file, "w").close()
            for user, password in users.items():
                subprocess.run(["mosquitto_passwd", "-b", password_file, user, password],
                               check=True, capture_output=True)
            lines += ["allow_anonymous false", f"password_file {password_file}"]
        else:
            lines.append("allow_anonymous true")
        if acl is not None:
            acl_file = os.path.join(self.folder, "acl")
            with open(acl_file, "w") as handle:
                handle.write(acl)
            lines.append(f"acl_file {acl_file}")
        if tls:
            c = self.certs
            lines += [f"listener {self.tls_port} 127.0.0.1", f"cafile {c['ca.crt']}",
                      f"certfile {c['server.crt']}", f"keyfile {c['server.key']}"]
            if require_certificate:
                lines.append("require_certificate true")
        self.config = os.path.join(self.folder, "mosquitto.conf")
        with open(self.config, "w") as handle:
            handle.write("\n".join(lines) + "\n")

    def url(self, topic="", user=None, tls=False, host="127.0.0.1"):
        auth = f"{user}@" if user else ""
        scheme, port = ("mqtts", self.tls_port) if tls else ("mqtt", self.port)
        return f"{scheme}://{auth}{host}:{port}/{topic}"

    def start(self, timeout=10.0):
        self.proc = subprocess.Popen([MOSQUITTO, "-c", self.config], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mosquitto did not start:\n{self.log()}")
                time.sleep(0.05)

    def stop(self):
        """SIGTERM (it saves its persistence file), by pid."""
        if self.proc is not None:
            stop_process(self.proc)
        self.proc = None

    def restart(self):
        self.stop()
        return self.start()

    def log(self):
        try:
            with open(self.log_path, errors="replace") as handle:
                return handle.read()
        except OSError:
            return ""
