"""Where recordings go: ``s3://BUCKET/PREFIX`` (the prefix may use ``{system} {channel}
{interface}`` and strftime fields, filled from the file's start), the endpoint, TLS and the
credentials (boto3's own chain: environment, shared credentials file, profile; never shown), and
what an error from the store means (the login or the bucket: said, not retried soon; the network:
retried with backoff)."""
import dataclasses
import os
import string
import time
import urllib.parse

from ..argtypes import byte_size, duration, read_path
from ..errors import UploadMismatch, UsageError

PREFIX_FIELDS = ("system", "channel", "interface")
PART_SIZE = 8 << 20  # multipart above this; every part this size but the last
# the store's answers that retrying soon will not change: a wrong key, no such bucket, no right
REFUSALS = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "NoSuchBucket",
            "AllAccessDisabled", "InvalidBucketName", "AuthorizationHeaderMalformed",
            "InvalidToken", "ExpiredToken", "403", "404"}


def add_upload_arguments(group, url_flag=True, store_only=False):
    """The upload flags (``--upload URL`` itself only beside ``--record``; ``store_only``: only
    where the store is and how to log in, for another writer to it: the archive)."""
    if url_flag:
        group.add_argument("--upload", metavar="URL", default=None,
                           help="send every closed recording of --record to S3-compatible "
                                "storage: s3://BUCKET/PREFIX (PREFIX may use {system} "
                                "{channel} {interface} and strftime fields, from the file's "
                                "start); the files on disk are the queue")
    group.add_argument("--upload-endpoint", metavar="URL", default=None,
                       help="the store's address, for MinIO, Ceph, Garage... (default: AWS)")
    group.add_argument("--upload-ca", metavar="FILE", default=None, type=read_path,
                       help="trust this CA (PEM) for the store's TLS certificate")
    group.add_argument("--upload-profile", metavar="NAME", default=None,
                       help="the credentials profile (default: boto3's: AWS_ACCESS_KEY_ID... "
                            "in the environment, AWS_PROFILE, ~/.aws/credentials)")
    if store_only:
        return
    group.add_argument("--upload-limit", metavar="RATE", default=None,
                       type=byte_size,
                       help="send at most RATE bytes/s (e.g. 200K), so that a cellular link "
                            "keeps room for the rest")
    group.add_argument("--upload-delete", action="store_true",
                       help="delete each file once the store has confirmed it whole")
    group.add_argument("--upload-max-age", metavar="TIME", default=None, type=duration,
                       help="/healthz turns unhealthy while a file waits longer than TIME to "
                            "be sent (e.g. 1h)")


@dataclasses.dataclass
class Target:
    bucket: str
    prefix: str  # a template: fields and strftime
    endpoint: str = None
    ca: str = None
    profile: str = None

    @property
    def where(self):
        return f"s3://{self.bucket}" + (f" at {self.endpoint}" if self.endpoint else "")

    def identity(self):
        """What a confirmation mark names: a file sent to one store is still to send to
        another."""
        return {"bucket": self.bucket, "prefix": self.prefix, "endpoint": self.endpoint}

    def key_for(self, name, start, fields):
        """The object key of a file: the prefix (filled from ``fields`` and the file's start,
        a Unix time) and ``name``, its path below the recording's folder."""
        prefix = time.strftime(self.prefix, time.localtime(start)) if "%" in self.prefix \
            else self.prefix
        values = {key: fields.get(key) or "_" for key in PREFIX_FIELDS}
        prefix = prefix.format(**values)
        name = name.replace(os.sep, "/")
        return f"{prefix.rstrip('/')}/{name}" if prefix.strip("/") else name

    def client(self):
        """A boto3 S3 client (its own retries few: the uploader backs off itself)."""
        import boto3
        import botocore.config
        import botocore.exceptions

        try:
            session = boto3.session.Session(profile_name=self.profile)
        except botocore.exceptions.ProfileNotFound:
            raise UsageError(f"--upload-profile {self.profile}: no such profile in the shared "
                             "credentials or config file") from None
        config = botocore.config.Config(
            retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=5,
            read_timeout=60, tcp_keepalive=True,
            s3={"addressing_style": "path"} if self.endpoint else None,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required")
        client = session.client("s3", endpoint_url=self.endpoint,
                                region_name=session.region_name or "us-east-1",
                                verify=self.ca if self.ca else True, config=config)
        # botocore reads a body once to sign it (over http://) before sending it: only the
        # sending goes through --upload-limit
        client.meta.events.register("before-sign.s3", _signing)
        client.meta.events.register("before-send.s3", _sending)
        return client


def _signing(request, **kwargs):
    if hasattr(request.body, "limited"):
        request.body.limited = False


def _sending(request, **kwargs):
    if hasattr(request.body, "limited"):
        request.body.limited = True


def target_from_args(args, url, flag="--upload"):
    """The Target of ``url`` and the flags beside it (a UsageError naming the flag)."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise UsageError(f"{flag} {url}: give s3://BUCKET/PREFIX (the store's address goes "
                         "in --upload-endpoint)")
    if parsed.query or parsed.fragment or "@" in parsed.netloc:
        raise UsageError(f"{flag} {url}: give s3://BUCKET/PREFIX only; credentials come from "
                         "the environment, the shared credentials file or --upload-profile")
    prefix = parsed.path.lstrip("/")
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(prefix) if name is not None]
    except ValueError as exc:
        raise UsageError(f"{flag} {url}: {exc}") from None
    unknown = sorted({name for name in names if name not in PREFIX_FIELDS})
    if unknown:
        raise UsageError(f"{flag} {url}: unknown field {{{unknown[0]}}}: the fields are "
                         + ", ".join("{%s}" % f for f in PREFIX_FIELDS) + " and strftime's")
    endpoint = args.upload_endpoint
    if endpoint:
        scheme = urllib.parse.urlsplit(endpoint).scheme
        if scheme not in ("http", "https"):
            raise UsageError(f"--upload-endpoint {endpoint}: give http(s)://HOST[:PORT]")
    if args.upload_ca:
        _check_ca(args.upload_ca)
    return Target(parsed.netloc, prefix, endpoint, args.upload_ca, args.upload_profile)


def _check_ca(path):
    """A UsageError now if ``path`` holds no CA certificate (else every request would fail
    with a TLS error that tells to give the CA)."""
    import ssl

    try:
        ssl.create_default_context(cafile=path)
    except ssl.SSLError:
        raise UsageError(f"--upload-ca {path}: no PEM certificate in it (give the CA that "
                         "signed the store's certificate, in PEM)") from None
    except OSError as exc:
        raise UsageError(f"--upload-ca {path}: cannot read it ({exc.strerror or exc})") \
            from None


def describe_failure(exc, target):
    """(refused, one line) for an exception of boto3: ``refused`` when the store answered no
    (a wrong key or bucket: no use retrying soon), else the network or the store is down."""
    import botocore.exceptions

    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return True, (f"no credentials for {target.where}: set AWS_ACCESS_KEY_ID and "
                      "AWS_SECRET_ACCESS_KEY, or a profile (--upload-profile, AWS_PROFILE)")
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "403", "AccessDenied",
                    "InvalidToken", "ExpiredToken") or status == 403:
            return True, (f"{target.where} refused the credentials or the bucket: {code} "
                          "(check the access key, the secret and the bucket's policy)")
        if code in ("NoSuchBucket", "404") or (status == 404 and code != "NoSuchKey"):
            return True, (f"{target.where}: no bucket named {target.bucket} (create it, or "
                          "check the URL)")
        if code in REFUSALS:
            return True, f"{target.where} refused: {code}: {error.get('Message', '')}"
        return False, f"{target.where} answered {code or status}: {error.get('Message', '')}"
    if isinstance(exc, botocore.exceptions.SSLError):
        if target.ca:
            return True, (f"{target.where}: TLS failed ({exc}); is --upload-ca {target.ca} "
                          "the CA that signed the store's certificate?")
        return True, (f"{target.where}: TLS failed ({exc}); give the store's CA with "
                      "--upload-ca")
    if isinstance(exc, UploadMismatch):
        return False, str(exc)
    if isinstance(exc, (botocore.exceptions.BotoCoreError, OSError)):
        return False, f"cannot reach {target.where}: {exc}"
    raise exc
