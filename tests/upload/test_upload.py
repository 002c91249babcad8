"""--upload and ``cancorder upload`` against a real S3 API over HTTP (moto's server as a process):
objects read back through python-can, outages, kill -9 in a multipart upload, refusals, the
rate limit."""
import glob
import os
import signal
import subprocess
import sys
import threading
import time

import can
import pytest

from cancorder.logfiles.marks import mark_path
from cancorder.logfiles.naming import PART
from tests.helpers import cancorder_env, free_port, http_get, wait_until
from tests.upload.s3 import SECRET, CuttableRelay, candump_file, run_upload, s3_env


def sequence_of(objects, tmp_path):
    """The 64-bit sequence numbers (gen --data-mode sequence) of every object, objects in key
    order (the file names number them)."""
    numbers = []
    for key in sorted(objects, key=lambda k: int(k.rsplit("-", 1)[1].split(".")[0])):
        local = tmp_path / ("read-" + os.path.basename(key))
        local.write_bytes(objects[key])
        numbers.extend(int.from_bytes(bytes(m.data), "big") for m in can.LogReader(str(local)))
    return numbers


def serve_gen(cancorder_process, tmp_path, endpoint, count, rate, *extra):
    return cancorder_process(
        "gen", "-r", str(rate), "-n", str(count), "--data-mode", "sequence", "--id", "0x123",
        "--seed", "1", "--async", "--no-zeroconf", "-p", str(free_port()),
        "--record", str(tmp_path / "rec" / "r-{n}.log"), "--rotate-size", "1M",
        "--upload", "s3://logs/car/{channel}", "--upload-endpoint", endpoint, *extra,
        env=cancorder_env(**s3_env()))


# ---- the recording, sent while it is made ----

def _record_with_outage(cancorder_process, s3_server, tmp_path, seconds, cut_for):
    """gen at 20,000 frames/s into 1 MB files, the store cut off for ``cut_for`` s in the
    middle: every frame in the bucket exactly once, in order."""
    s3_server.client().create_bucket(Bucket="logs")
    relay = CuttableRelay(s3_server.port)
    rate = 20_000
    count = rate * seconds
    try:
        proc = serve_gen(cancorder_process, tmp_path, relay.endpoint, count, rate)
        proc.wait_for(r"started", 30)
        start = time.monotonic()
        time.sleep(max(1.0, (seconds - cut_for) / 2))
        relay.cut()
        cut_at = time.monotonic() - start
        time.sleep(cut_for)
        relay.restore()
        assert proc.proc.wait(seconds + 60) == 0, proc.log
    finally:
        relay.close()
    log = proc.log
    objects = s3_server.objects("logs")
    files = [p for p in glob.glob(str(tmp_path / "rec" / "r-*.log"))]
    assert len(files) >= seconds // 2, files  # rotated into many files
    assert sorted(objects) == sorted(f"car/gen/{os.path.basename(p)}" for p in files), log
    for path in files:
        assert objects[f"car/gen/{os.path.basename(path)}"] == open(path, "rb").read()
        assert os.path.exists(mark_path(path))
    numbers = sequence_of(objects, tmp_path)
    assert len(numbers) == count
    assert numbers == list(range(numbers[0], numbers[0] + count))
    # the outage was noticed once and the uploads resumed
    assert log.count("the files wait and are sent when it answers again") == 1, log
    assert "answers again" in log
    assert f"uploaded {len(files)} files" in log and "waiting" not in log, log
    print(f"outage of {cut_for} s at {cut_at:.1f} s: {count:,} frames, {len(files)} files, "
          f"{len(objects)} objects, {len(numbers):,} frames read back in order")
    return cut_at


@pytest.mark.serial
def test_recording_uploaded_through_a_short_outage(cancorder_process, s3_server, tmp_path):
    _record_with_outage(cancorder_process, s3_server, tmp_path, seconds=8, cut_for=3)


@pytest.mark.long
@pytest.mark.serial
def test_20000_frames_per_second_for_30_s_store_gone_for_20_s(cancorder_process, s3_server,
                                                              tmp_path):
    _record_with_outage(cancorder_process, s3_server, tmp_path, seconds=30, cut_for=20)


def test_upload_delete_removes_confirmed_files_and_keeps_the_rest(cancorder_process, s3_server,
                                                                  tmp_path):
    s3_server.client().create_bucket(Bucket="logs")
    proc = serve_gen(cancorder_process, tmp_path, s3_server.endpoint, 60_000, 20_000,
                     "--upload-delete")
    assert proc.proc.wait(60) == 0, proc.log
    objects = s3_server.objects("logs")
    assert len(objects) >= 2
    numbers = sequence_of(objects, tmp_path)
    assert numbers == list(range(numbers[0], numbers[0] + 60_000))
    assert not glob.glob(str(tmp_path / "rec" / "r-*")), os.listdir(tmp_path / "rec")
    assert not glob.glob(str(tmp_path / "rec" / ".r-*"))  # the marks went with the files


def test_wrong_bucket_is_said_once_recording_goes_on_and_delete_keeps_files(
        cancorder_process, s3_server, tmp_path):
    metrics_port = free_port()
    proc = serve_gen(cancorder_process, tmp_path, s3_server.endpoint, 0, 5_000,
                     "--upload-delete", "--metrics", f"127.0.0.1:{metrics_port}")
    proc.wait_for(r"upload: .*no bucket named logs", 30)
    assert wait_until(lambda: len(glob.glob(str(tmp_path / "rec" / "r-*.log"))) >= 2, 30)
    status, body = http_get(metrics_port, "/healthz")
    assert status == 503 and "no bucket named logs" in body, (status, body)
    status, body = http_get(metrics_port, "/metrics")
    assert "cancorder_upload_failures" in body and "cancorder_upload_waiting_files" in body
    assert proc.terminate() == 0
    log = proc.log
    assert log.count("no bucket named logs") == 1, log
    assert "Traceback" not in log
    files = [p for p in glob.glob(str(tmp_path / "rec" / "r-*.log"))]
    assert len(files) >= 2 and not any(os.path.exists(mark_path(p)) for p in files)
    assert "recorded" in log and "could not be recorded" not in log


def test_wrong_key_one_line_exit_code_of_mqtt_login_errors(tmp_path):
    from cancorder.errors import MqttError
    from tests.upload.s3 import MotoServer

    candump_file(tmp_path / "a.log", 100)
    # moto takes any key unless told to check them (then it knows none: every key is wrong)
    server = MotoServer(INITIAL_NO_AUTH_ACTION_COUNT="0")
    try:
        result = subprocess.run(
            [sys.executable, "-m", "cancorder", "upload", str(tmp_path), "s3://logs/x",
             "--upload-endpoint", server.endpoint],
            env=cancorder_env(**s3_env(AWS_SECRET_ACCESS_KEY="wrong-secret")),
            capture_output=True, text=True, timeout=60)
    finally:
        server.stop()
    assert result.returncode == MqttError.exit_code == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "error: " in lines[0] and "credentials" in lines[0], lines
    assert "wrong-secret" not in result.stderr and SECRET not in result.stderr
    assert not os.path.exists(mark_path(str(tmp_path / "a.log")))


def test_upload_command_sends_once_then_nothing(s3_server, tmp_path):
    s3_server.client().create_bucket(Bucket="logs")
    (tmp_path / "d" / "sub").mkdir(parents=True)
    candump_file(tmp_path / "d" / "r-1.log", 1000)
    candump_file(tmp_path / "d" / "sub" / "r-2.log", 1000, 1000)
    (tmp_path / "d" / "r-3.log.part").write_text("(1700000000.000000) can0 123#00\n")
    result = run_upload(str(tmp_path / "d"), "s3://logs/p", "--upload-endpoint",
                        s3_server.endpoint)
    assert result.returncode == 0, result.stderr
    objects = s3_server.objects("logs")
    assert sorted(objects) == ["p/r-1.log", "p/sub/r-2.log"]  # never a .part
    assert sequence_of({k.replace("sub/", ""): v for k, v in objects.items()},
                       tmp_path) == list(range(2000))
    again = run_upload(str(tmp_path / "d"), "s3://logs/p", "--upload-endpoint",
                       s3_server.endpoint)
    assert again.returncode == 0 and "uploaded 0 files" in again.stderr, again.stderr
    elsewhere = run_upload(str(tmp_path / "d"), "s3://logs/q", "--upload-endpoint",
                           s3_server.endpoint)  # another prefix: sent again, there
    assert "uploaded 2 files" in elsewhere.stderr, elsewhere.stderr


def test_kill_9_during_multipart_then_restart_uploads_whole_once(s3_server, tmp_path):
    client = s3_server.client()
    client.create_bucket(Bucket="logs")
    path = tmp_path / "big.log"
    candump_file(path, 330_000)  # about 14 MB: two parts of 8 MiB
    size = os.path.getsize(path)
    assert size > 8 << 20
    proc = subprocess.Popen(
        [sys.executable, "-m", "cancorder", "upload", str(tmp_path), "s3://logs/m",
         "--upload-endpoint", s3_server.endpoint, "--upload-limit", "3M"],
        env=cancorder_env(**s3_env()), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def parts_on_store():
        uploads = client.list_multipart_uploads(Bucket="logs").get("Uploads", [])
        if not uploads:
            return 0
        return len(client.list_parts(Bucket="logs", Key="m/big.log",
                                     UploadId=uploads[0]["UploadId"]).get("Parts", []))

    try:
        assert wait_until(lambda: parts_on_store() == 1, 30)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        proc.stderr.close()
    assert "Contents" not in client.list_objects_v2(Bucket="logs")  # not finished
    result = run_upload(str(tmp_path), "s3://logs/m", "--upload-endpoint", s3_server.endpoint)
    assert result.returncode == 0, result.stderr
    assert "1 part resumed" in result.stderr, result.stderr
    objects = s3_server.objects("logs")
    assert list(objects) == ["m/big.log"] and objects["m/big.log"] == path.read_bytes()
    assert not client.list_multipart_uploads(Bucket="logs").get("Uploads")


def test_upload_limit_holds_the_rate_within_10_percent(s3_server, tmp_path):
    s3_server.client().create_bucket(Bucket="logs")
    candump_file(tmp_path / "a.log", 50_000)  # about 2 MB: 10 s at 200K/s
    size = os.path.getsize(tmp_path / "a.log")
    relay = CountingRelay(s3_server.port)
    try:
        result = run_upload(str(tmp_path), "s3://logs/r", "--upload-endpoint", relay.endpoint,
                            "--upload-limit", "200K")
    finally:
        relay.close()
    assert result.returncode == 0, result.stderr
    sent, seconds = relay.upstream_bytes, relay.upstream_seconds
    assert sent >= size
    rate = sent / seconds
    assert 0.9 * 200 * 1024 <= rate <= 1.1 * 200 * 1024, (sent, seconds, rate)


class CountingRelay(CuttableRelay):
    """The relay, counting the bytes sent to the store and when the first and last came."""

    upstream_bytes = 0
    _first = _last = None

    def _pump(self, source, sink):
        if source.getpeername()[1] == self.target_port:
            return super()._pump(source, sink)
        lock = threading.Lock()
        try:
            while True:
                data = source.recv(1 << 16)
                if not data:
                    break
                with lock:
                    now = time.monotonic()
                    self._first = self._first or now
                    self._last = now
                    self.upstream_bytes += len(data)
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            try:
                sock.shutdown(2)
            except OSError:
                pass

    @property
    def upstream_seconds(self):
        return self._last - self._first


def test_usage_errors_are_one_line(tmp_path):
    result = run_upload(str(tmp_path), "http://x/y")
    assert result.returncode == 2 and "error: upload http://x/y" in result.stderr
    proc = subprocess.run([sys.executable, "-m", "cancorder", "gen", "-n", "1",
                           "--upload", "s3://logs/x"], env=cancorder_env(),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "add --record PATH" in proc.stderr, proc.stderr
    assert not glob.glob(str(tmp_path / ("*" + PART)))


def test_retention_keeps_files_not_yet_uploaded(cancorder_process, s3_server, tmp_path):
    """--keep-files 2 with the store refusing: every file stays (the disk has room); once a
    bucket is there, they are sent and retention deletes the oldest sent ones."""
    proc = serve_gen(cancorder_process, tmp_path, s3_server.endpoint, 0, 5_000,
                     "--keep-files", "2")
    proc.wait_for(r"no bucket named logs", 30)
    assert wait_until(lambda: len(glob.glob(str(tmp_path / "rec" / "r-*.log"))) >= 4, 30)
    assert "deleted the oldest recording" not in proc.log
    assert proc.terminate() == 0
    kept = glob.glob(str(tmp_path / "rec" / "r-*.log"))
    assert len(kept) >= 4
    s3_server.client().create_bucket(Bucket="logs")
    result = run_upload(str(tmp_path / "rec"), "s3://logs/car/gen", "--upload-endpoint",
                        s3_server.endpoint)
    assert result.returncode == 0 and f"uploaded {len(kept)} files" in result.stderr


def test_a_backlog_older_than_max_age_makes_healthz_unhealthy(cancorder_process, s3_server,
                                                             tmp_path):
    """--upload-max-age alone (the store answers, but slowly: --upload-limit 2K): healthy while
    nothing waits, 503 naming the backlog once a closed file has waited longer than 2 s.
    At 1,000 frames/s the first 1 MB file closes after about 20 s: a loaded machine's slow
    start cannot make the first answer come after a file waited."""
    s3_server.client().create_bucket(Bucket="logs")
    metrics_port = free_port()
    proc = serve_gen(cancorder_process, tmp_path, s3_server.endpoint, 0, 1_000,
                     "--upload-limit", "2K", "--upload-max-age", "2s",
                     "--metrics", f"127.0.0.1:{metrics_port}")

    def health():
        try:
            return http_get(metrics_port, "/healthz")[0]
        except OSError:  # the metrics port is not up yet
            return None

    proc.wait_for(r"metrics on http", 30)
    # 503 "not open" until the source is open (the metrics port may come first, loaded)
    assert wait_until(lambda: health() == 200, 30), http_get(metrics_port, "/healthz")
    assert not glob.glob(str(tmp_path / "rec" / "r-*.log"))  # healthy with no file closed yet
    assert wait_until(lambda: health() == 503, 60), proc.log
    status, body = http_get(metrics_port, "/healthz")
    assert status == 503 and "waiting, the oldest for" in body, body
    assert "no bucket" not in body  # the store answers: the age alone made it unhealthy
    assert proc.terminate() == 0
