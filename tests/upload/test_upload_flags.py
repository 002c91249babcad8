"""The upload flags end to end against moto's S3 server (a process): --upload-ca (HTTPS with a
CA made here), --upload-profile (a shared credentials file, the keys checked by the store),
--upload in a config file, and the confirmation by checksum when the store's ETag is no MD5."""
import json
import os
import subprocess
import sys

from cancorder.logfiles.marks import mark_path
from tests.helpers import cancorder_env, free_port
from tests.mosquitto import make_certificates
from tests.upload.s3 import (SECRET, EtagRewritingRelay, MotoServer, candump_file, run_upload,
                             s3_env)


def frames_of(path):
    import can

    return [(m.arbitration_id, bytes(m.data)) for m in can.LogReader(str(path))]


# ---- the confirmation: a store whose ETag is no MD5 of the object ----

def test_a_store_whose_etag_is_no_md5_confirms_by_the_sha256_checksum(s3_server, tmp_path):
    """Through a relay that changes every ETag the store answers (as AWS does with SSE-KMS),
    a single-request file and a multipart one (over 8 MiB) are confirmed all the same, by
    their SHA-256 checksums; before, the ETag never matched and they were sent forever."""
    s3_server.client().create_bucket(Bucket="logs")
    folder = tmp_path / "d"
    folder.mkdir()
    candump_file(folder / "small.log", 1000)
    candump_file(folder / "big.log", 200_000, 1000)  # about 9 MB: two parts
    assert os.path.getsize(folder / "big.log") > 8 << 20
    relay = EtagRewritingRelay(s3_server.port)
    try:
        result = run_upload(str(folder), "s3://logs/e", "--upload-endpoint", relay.endpoint,
                            timeout=25)
        # confirmed: not sent again
        again = run_upload(str(folder), "s3://logs/e", "--upload-endpoint", relay.endpoint)
    except subprocess.TimeoutExpired as exc:  # the files were never confirmed
        raise AssertionError(f"not confirmed in 25 s: {exc.stderr}") from None
    finally:
        relay.close()
    assert result.returncode == 0, result.stderr
    assert "uploaded 2 files" in result.stderr, result.stderr
    assert relay.rewritten >= 4  # the PUT's, the parts', the heads' ETags: none an MD5
    objects = s3_server.objects("logs")
    assert sorted(objects) == ["e/big.log", "e/small.log"]
    for name in ("small.log", "big.log"):
        assert objects[f"e/{name}"] == (folder / name).read_bytes()
        with open(mark_path(str(folder / name))) as file:
            assert json.load(file)["confirmed_by"] == "checksum"
    assert again.returncode == 0 and "uploaded 0 files" in again.stderr, again.stderr


def test_an_interrupted_upload_begun_without_the_checksum_is_begun_again(s3_server, tmp_path):
    """A multipart upload of the key left by an earlier version (no checksum algorithm: its
    parts cannot take one) is aborted, not resumed: the file goes whole, with its SHA-256."""
    client = s3_server.client()
    client.create_bucket(Bucket="logs")
    folder = tmp_path / "d"
    folder.mkdir()
    candump_file(folder / "big.log", 200_000)
    data = (folder / "big.log").read_bytes()
    upload_id = client.create_multipart_upload(Bucket="logs", Key="m/big.log")["UploadId"]
    client.upload_part(Bucket="logs", Key="m/big.log", UploadId=upload_id, PartNumber=1,
                       Body=data[:8 << 20])
    result = run_upload(str(folder), "s3://logs/m", "--upload-endpoint", s3_server.endpoint)
    assert result.returncode == 0, result.stderr
    assert "uploaded 1 file " in result.stderr and "resumed" not in result.stderr
    assert s3_server.objects("logs") == {"m/big.log": data}
    assert not client.list_multipart_uploads(Bucket="logs").get("Uploads")
    head = client.head_object(Bucket="logs", Key="m/big.log", ChecksumMode="ENABLED")
    assert head.get("ChecksumSHA256")
    with open(mark_path(str(folder / "big.log"))) as file:
        assert json.load(file)["confirmed_by"] == "checksum"


# ---- --upload-ca ----

def test_upload_ca_trusts_a_private_ca_and_without_it_one_line(tmp_path):
    """moto over HTTPS with a certificate signed by a CA made here: without --upload-ca one
    `error:` line naming TLS and the flag, exit 1, nothing marked; with it the file is sent."""
    certificates = make_certificates(str(tmp_path / "certs"))
    folder = tmp_path / "d"
    folder.mkdir()
    candump_file(folder / "a.log", 1000)
    server = MotoServer(certificates=certificates)
    try:
        server.client().create_bucket(Bucket="logs")
        refused = run_upload(str(folder), "s3://logs/t", "--upload-endpoint", server.endpoint)
        assert refused.returncode == 1, refused.stderr
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), lines
        assert "TLS" in lines[0] and "--upload-ca" in lines[0], lines
        assert not os.path.exists(mark_path(str(folder / "a.log")))
        assert "Contents" not in server.client().list_objects_v2(Bucket="logs")
        sent = run_upload(str(folder), "s3://logs/t", "--upload-endpoint", server.endpoint,
                          "--upload-ca", certificates["ca.crt"])
        assert sent.returncode == 0, sent.stderr
        assert "uploaded 1 file " in sent.stderr, sent.stderr
        assert server.objects("logs") == {"t/a.log": (folder / "a.log").read_bytes()}
    finally:
        server.stop()


def test_upload_ca_not_a_readable_certificate_is_a_usage_error(tmp_path):
    """Before anything is sent (even with nothing to send): one `error:` line naming the file,
    exit 2 (it was a TLS failure telling to give --upload-ca, or nothing at all)."""
    (tmp_path / "not-a-ca.pem").write_text("hello\n")
    for ca, why in ((tmp_path / "no.pem", "cannot read it"),
                    (tmp_path / "not-a-ca.pem", "no PEM certificate")):
        result = run_upload(str(tmp_path), "s3://logs/t", "--upload-endpoint",
                            "https://127.0.0.1:9", "--upload-ca", str(ca))
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: --upload-ca {ca}: {why}"), lines


# ---- --upload-profile ----

def iam_user_keys(server):
    """A user of moto's IAM allowed every S3 action, and its access key (moto checks the keys
    only of its own users: INITIAL_NO_AUTH_ACTION_COUNT)."""
    import boto3

    iam = boto3.client("iam", endpoint_url=server.endpoint, region_name="us-east-1",
                       aws_access_key_id="x", aws_secret_access_key="x")
    iam.create_user(UserName="car")
    iam.put_user_policy(UserName="car", PolicyName="s3", PolicyDocument=json.dumps(
        {"Version": "2012-10-17",
         "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
    key = iam.create_access_key(UserName="car")["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


def test_upload_profile_takes_the_profiles_keys_and_never_prints_them(tmp_path):
    """A store that checks the keys, no key in the environment: the profile's keys (the only
    valid ones) send the file; another profile (wrong keys) is refused in one line; a profile
    that is not in the file is one `no such profile` line. The secret is never printed."""
    # the first 4 requests unchecked: the user, its policy, its key, the bucket
    server = MotoServer(INITIAL_NO_AUTH_ACTION_COUNT="4")
    try:
        key_id, secret = iam_user_keys(server)
        server.client().create_bucket(Bucket="logs")
        credentials = tmp_path / "credentials"
        credentials.write_text(f"[car]\naws_access_key_id = {key_id}\n"
                               f"aws_secret_access_key = {secret}\n\n"
                               f"[other]\naws_access_key_id = AKIAOTHER0000000000\n"
                               f"aws_secret_access_key = {SECRET}\n")
        env = {"AWS_SHARED_CREDENTIALS_FILE": str(credentials), "AWS_CONFIG_FILE": os.devnull,
               "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": None,
               "AWS_SECRET_ACCESS_KEY": None, "AWS_SESSION_TOKEN": None, "AWS_PROFILE": None}
        folder = tmp_path / "d"
        folder.mkdir()
        candump_file(folder / "a.log", 1000)

        def upload(profile):
            result = run_upload(str(folder), "s3://logs/p", "--upload-endpoint",
                                server.endpoint, "--upload-profile", profile, env=env)
            assert secret not in result.stderr + result.stdout
            assert SECRET not in result.stderr + result.stdout
            return result

        missing = upload("nobody")
        assert missing.returncode == 2, missing.stderr
        assert missing.stderr.strip().splitlines() == [
            "error: --upload-profile nobody: no such profile in the shared credentials or "
            "config file"]
        wrong = upload("other")
        assert wrong.returncode == 1, wrong.stderr
        lines = wrong.stderr.strip().splitlines()
        assert len(lines) == 1 and "refused the credentials" in lines[0], lines
        assert not os.path.exists(mark_path(str(folder / "a.log")))
        right = upload("car")
        assert right.returncode == 0, right.stderr
        assert "uploaded 1 file " in right.stderr, right.stderr
        assert server.objects("logs", keys=(key_id, secret)) == {
            "p/a.log": (folder / "a.log").read_bytes()}
    finally:
        server.stop()


# ---- --upload in a config file ----

def test_upload_keys_in_a_config_file_send_the_recording(s3_server, tmp_path):
    """serve --config with record and upload keys in a [[bus]] table (no flag on the command
    line): the recording's file is in the bucket, the frames replayed, once."""
    s3_server.client().create_bucket(Bucket="logs")
    lines = [f"(1700000000.{n:06d}) vcan0 123#{n:016X}" for n in range(500)]
    (tmp_path / "v.log").write_text("\n".join(lines) + "\n")
    (tmp_path / "c.toml").write_text(
        '[[bus]]\nname = "car"\nsource = "replay"\n'
        f'files = ["{tmp_path}/v.log"]\nzeroconf = false\nasync = true\n'
        f'bind = "127.0.0.1"\nport = {free_port()}\n'
        f'record = ["{tmp_path}/rec/r-{{n}}.log"]\n'
        'upload = "s3://logs/cfg/{channel}"\n'
        f'upload_endpoint = "{s3_server.endpoint}"\nupload_delete = true\n')
    done = subprocess.run([sys.executable, "-m", "cancorder", "serve", "--config",
                           str(tmp_path / "c.toml")], capture_output=True, text=True,
                          env=cancorder_env(**s3_env()), timeout=60)
    assert done.returncode == 0, done.stderr
    assert "uploaded 1 file " in done.stderr, done.stderr
    objects = s3_server.objects("logs")
    assert list(objects) == ["cfg/vcan0/r-1.log"], objects
    (tmp_path / "got.log").write_bytes(objects["cfg/vcan0/r-1.log"])
    assert frames_of(tmp_path / "got.log") == frames_of(tmp_path / "v.log")
    assert not (tmp_path / "rec" / "r-1.log").exists()  # upload_delete = true was read too


def test_upload_keys_in_a_config_file_are_checked_with_the_file_and_bus(tmp_path):
    """serve --config --check: the upload keys resolved like the flags; a mistake in them is
    one line naming the file, the bus and the key's flag (exit 2), before anything runs."""
    (tmp_path / "v.log").write_text("(1700000000.000000) vcan0 123#00\n")
    bus = (f'[[bus]]\nname = "car"\nsource = "replay"\nfiles = ["{tmp_path}/v.log"]\n'
           f'record = ["{tmp_path}/rec/r-{{n}}.log"]\n')
    cases = {
        'upload = "s3://logs/{channel}"\nupload_limit = "200K"\nupload_delete = true\n':
            (0, 'upload = "s3://logs/{channel}"\n'),
        'upload_endpoint = "http://127.0.0.1:9"\n':
            (2, "--upload-endpoint applies to an upload: add --upload URL"),
        f'upload = "s3://logs/x"\nupload_ca = "{tmp_path}/none.pem"\n':
            (2, f"--upload-ca {tmp_path}/none.pem: cannot read it"),
        'upload = "http://logs/x"\n': (2, "--upload http://logs/x: give s3://BUCKET/PREFIX"),
    }
    for keys, (code, expected) in cases.items():
        (tmp_path / "c.toml").write_text(bus + keys)
        done = subprocess.run([sys.executable, "-m", "cancorder", "serve", "--config",
                               str(tmp_path / "c.toml"), "--check"], capture_output=True,
                              text=True, env=cancorder_env(), timeout=60)
        assert done.returncode == code, (keys, done.stderr)
        if code:
            lines = done.stderr.splitlines()
            assert len(lines) == 1 and lines[0].startswith(
                f'error: config {tmp_path}/c.toml, bus "car": {expected}'), lines
        else:
            assert expected in done.stdout and "upload_limit = 204800" in done.stdout
