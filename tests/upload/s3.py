"""A real S3 API over HTTP for the upload tests: moto's standalone server as a process on a free
port (stopped by its pid), and a TCP relay in front of it that a test can cut and restore (moto
keeps its buckets in memory: stopping the server itself would empty the store)."""
import os
import re
import socket
import subprocess
import sys
import threading
import time

from tests.helpers import cancorder_env, free_port, stop_process, wait_until

KEY_ID, SECRET = "cancorder-test-key", "cancorder-test-secret"


class MotoServer:
    def __init__(self, certificates=None, **env):
        """``env``: moto's settings (INITIAL_NO_AUTH_ACTION_COUNT=0: check the keys);
        ``certificates`` (tests.mosquitto.make_certificates'): HTTPS with its server
        certificate."""
        self.port = free_port()
        self.certificates = certificates
        tls = ["-c", certificates["server.crt"], "-k", certificates["server.key"]] \
            if certificates else []
        self.endpoint = f"{'https' if certificates else 'http'}://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port),
             *tls],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ, **env))
        if not wait_until(self._answers, 30):
            self.stop()
            raise RuntimeError("moto's server did not start")

    def _answers(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), 0.2).close()
            return True
        except OSError:
            return False

    def client(self, endpoint=None, keys=(KEY_ID, SECRET)):
        import boto3

        verify = self.certificates["ca.crt"] if self.certificates else None
        return boto3.client("s3", endpoint_url=endpoint or self.endpoint,
                            aws_access_key_id=keys[0], aws_secret_access_key=keys[1],
                            region_name="us-east-1", verify=verify)

    def objects(self, bucket, keys=(KEY_ID, SECRET)):
        """{key: bytes} of every object in ``bucket``."""
        client = self.client(keys=keys)
        found = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                found[item["Key"]] = client.get_object(Bucket=bucket,
                                                       Key=item["Key"])["Body"].read()
        return found

    def stop(self):
        stop_process(self.proc)


def s3_env(**extra):
    """The environment a cancorder process finds its credentials in (boto3's standard way)."""
    env = {"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET,
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": os.devnull,
           "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
    env.update(extra)
    return env


def run_upload(*args, timeout=60, env=None):
    """``cancorder upload ARGS`` to its end (credentials from s3_env, or ``env``: a variable
    set to None there is removed)."""
    env = cancorder_env(**(s3_env() if env is None else env))
    return subprocess.run([sys.executable, "-m", "cancorder", "upload", *args],
                          env={k: v for k, v in env.items() if v is not None},
                          capture_output=True, text=True, timeout=timeout)


def candump_file(path, count, start=0):
    """A candump .log of ``count`` frames numbered from ``start`` (payload: the number)."""
    with open(path, "w") as file:
        for n in range(start, start + count):
            file.write(f"(1700000000.{n % 1000000:06d}) can0 123#{n:016X}\n")


class CuttableRelay:
    """127.0.0.1:port -> the server; ``cut()`` closes the port and every connection through it
    (the store is gone for the client), ``restore()`` opens it again on the same port."""

    def __init__(self, target_port):
        self.target_port = target_port
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        self._sockets = []
        self._listener = None
        self.restore()

    def restore(self):
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener):
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port), 5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)  # a slow request (--upload-limit) waits long for its answer
            with self._lock:
                self._sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _passing(self, data, to_client):
        """What goes on of ``data`` (a relay that changes it says how)."""
        return data

    def _pump(self, source, sink):
        to_client = source.getpeername()[1] == self.target_port
        try:
            while True:
                data = source.recv(1 << 16)
                if not data:
                    break
                sink.sendall(self._passing(data, to_client))
        except OSError:
            pass
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        self._listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def close(self):
        self.cut()


class EtagRewritingRelay(CuttableRelay):
    """The relay, turning every MD5 ETag the store answers into another string of the same
    length (each hex digit d into f-d), and the ETags a client sends back (the parts of
    CompleteMultipartUpload) into the store's again: a store whose ETag is no MD5 of the object,
    as AWS with SSE-KMS. ``rewritten`` counts the ETags changed on the way to the client."""

    # an ETag in a response header, or in XML ("" escaped by moto, or not); a small message
    # (headers, the XML of a few parts) comes in one piece on 127.0.0.1
    ETAG = re.compile(rb'(ETag: "|<ETag>"|<ETag>&#34;|<ETag>&quot;)([0-9a-f]{32})')
    rewritten = 0

    @staticmethod
    def _flip(match):
        return match.group(1) + bytes(b"0123456789abcdef"[15 - int(chr(c), 16)]
                                      for c in match.group(2))

    def _passing(self, data, to_client):
        data, count = self.ETAG.subn(self._flip, data)
        if to_client:
            self.rewritten += count
        return data
