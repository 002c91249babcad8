"""A real S3 API over HTTP for the upload tests: moto's standalone server as a process on a free
port (stopped by its pid), and a TCP relay in front of it that a test can cut and restore (moto
keeps its buckets in memory: stopping the server itself would empty the store)."""
import os
import socket
import subprocess
import sys
import threading
import time

from tests.helpers import free_port, stop_process, wait_until

KEY_ID, SECRET = "cancorder-test-key", "cancorder-test-secret"


class MotoServer:
    def __init__(self, **env):
        """``env``: moto's settings (INITIAL_NO_AUTH_ACTION_COUNT=0: check the keys)."""
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
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

    def client(self, endpoint=None):
        import boto3

        return boto3.client("s3", endpoint_url=endpoint or self.endpoint,
                            aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET,
                            region_name="us-east-1")

    def objects(self, bucket):
        """{key: bytes} of every object in ``bucket``."""
        client = self.client()
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

    @staticmethod
    def _pump(source, sink):
        try:
            while True:
                data = source.recv(1 << 16)
                if not data:
                    break
                sink.sendall(data)
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
