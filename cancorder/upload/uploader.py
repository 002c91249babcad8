"""The uploader: closed recordings to the store, oldest first, from a thread of its own.

The folder is the queue: each round asks ``pending()`` for the closed files (never a ``.part``)
and sends those without a confirmation mark (``logfiles.marks``). A file up to PART_SIZE goes in
one PUT, a larger one as a multipart upload; a multipart upload a stop or a crash interrupted is
found again on the store (same key) and only its missing parts are sent. Each request carries
Content-MD5 and a SHA-256 checksum (S3's additional checksums), so the store checks every body
on arrival; after the last one, the object's size and its SHA-256 (where the store keeps it:
AWS, whatever the encryption) or else its ETag (the store's MD5, or MD5 of the parts' MD5s for
multipart) are compared with the file: only then is the mark written (and, with ``delete``,
the file removed). The key is fixed by the file, so a repeat overwrites the same object.
"""
import base64
import dataclasses
import hashlib
import io
import os
import threading
import time

from ..errors import UploadError, UploadMismatch, UploadStopped
from ..logfiles import marks
from ..report import plural
from .target import PART_SIZE, describe_failure

POLL_INTERVAL = 1.0  # how often the folder is looked at when nothing waits
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 10.0  # offline: how often the store is tried again at most
REFUSED_RETRY = 60.0  # a refused login or bucket: tried again this often (it may be fixed)
CHUNK = 16 << 10  # the rate limit takes the body in pieces this size
# the checksum every request carries and the store keeps (S3's additional checksums): it
# confirms an object whose ETag is no MD5 (SSE-KMS, SSE-C on AWS)
CHECKSUM = "SHA256"


class RateLimit:
    """At most ``rate`` bytes/s over every request, no burst: ``take(n)`` waits for its turn
    (on ``stop``, raises UploadStopped)."""

    def __init__(self, rate, stop):
        self.rate = rate
        self.stop = stop
        self._next = None

    def take(self, count):
        now = time.monotonic()
        if self._next is None or self._next < now - 0.25:  # idle: little credit saved up
            self._next = now
        self._next += count / self.rate
        wait = self._next - now
        if wait > 0 and self.stop.wait(wait):
            raise UploadStopped()


class _Body(io.BytesIO):
    """A request body read through the rate limit (seekable: botocore may send it again)."""

    def __init__(self, data, limit, stop):
        super().__init__(data)
        self._limit = limit
        self._stop = stop
        self.limited = True  # False while botocore reads it to sign it (target._signing)

    def read(self, size=-1):
        if self._stop.is_set():
            raise UploadStopped()
        if self._limit is None or not self.limited:
            return super().read(size)
        size = CHUNK if size is None or size < 0 else min(size, CHUNK)
        chunk = super().read(size)
        if chunk:
            self._limit.take(len(chunk))
        return chunk


def _md5(data):
    return hashlib.md5(data, usedforsecurity=False)


def _sha256(data):
    return hashlib.sha256(data)


def _b64(digest):
    return base64.b64encode(digest).decode()


def _etag(answer):
    return answer.get("ETag", "").strip('"')


@dataclasses.dataclass
class Expected:
    """What the store must say of an object (or a part) sent whole: its ETag when that is
    the MD5 (for multipart, the MD5 of the parts' MD5s, then -N), and its SHA-256 checksum
    (base64; for multipart, of the parts' checksums, then -N)."""
    etag: str
    checksum: str

    def confirmed_by(self, answer):
        """How ``answer`` (head_object's, upload_part's, a list_parts entry) confirms it:
        "checksum" where the store keeps the SHA-256 (AWS, whatever the encryption; a store
        whose ETag is no MD5), else "etag" (a store without checksums); None if it does not."""
        stored = answer.get(f"Checksum{CHECKSUM}")
        if stored:
            # a composite checksum comes with -N from AWS, without it from some stores
            bare = self.checksum.split("-")[0]
            return "checksum" if stored in (self.checksum, bare) else None
        if _etag(answer) == self.etag:
            return "etag"
        return None

    def found(self, answer):
        stored = answer.get(f"Checksum{CHECKSUM}")
        return f"SHA-256 {stored}" if stored else f"ETag {_etag(answer)}"

    def __str__(self):
        return f"SHA-256 {self.checksum}, ETag {self.etag}"


class Uploader:
    """``pending()`` -> the closed files, oldest first (absolute paths); ``name_of(path)`` -> its
    name below the recording's folder; ``fields`` fill the prefix. ``start()`` runs it in a
    thread (retrying forever, said once per outage), ``run_until_done()`` in line (a refusal
    raises UploadError)."""

    def __init__(self, target, pending, name_of, fields, log, delete=False, limit=None,
                 max_age=None, part_size=PART_SIZE):
        self.target = target
        self.pending = pending
        self.name_of = name_of
        self.fields = fields
        self.log = log
        self.delete = delete
        self.max_age = max_age
        self.part_size = part_size
        self._stop = threading.Event()
        self._closing = False
        self._wake = threading.Event()
        self.limit = RateLimit(limit, self._stop) if limit else None
        self._client = None
        self._thread = None
        self._confirmed = set()  # paths confirmed (marked): not looked at again
        self._outage = None  # what was said about the store being away (said once)
        self._backoff = BACKOFF_FIRST
        # counters (read by the metrics page from another thread: plain attributes)
        self.files = 0  # confirmed by the store in this run
        self.bytes = 0
        self.sent_bytes = 0  # bytes sent, resent ones included
        self.resumed_parts = 0  # parts of an interrupted multipart upload found on the store
        self.deleted = 0
        self.failures = 0
        self.last_success = None  # time.time() of the last confirmation
        self.waiting_files = 0
        self.waiting_bytes = 0
        self.oldest_waiting = None  # mtime of the oldest file waiting
        self.problem = None  # the store's refusal, while it lasts

    # ---- running ----

    def start(self):
        self._thread = threading.Thread(target=self._run, name="uploader", daemon=True)
        self._thread.start()

    def poke(self):
        """A file was closed: look now."""
        self._wake.set()

    def close(self, timeout):
        """Send what waits for up to ``timeout`` s (the last file the recorder closed too),
        then stop: a part still being sent is abandoned (its multipart upload resumes on the
        next start)."""
        self._closing = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)

    def run_until_done(self):
        """Send every file waiting now, in line; offline, retry with backoff; a refusal
        raises UploadError."""
        while True:
            waiting = self._waiting()
            if not waiting:
                return
            refused = self._round(waiting)
            if refused:
                raise UploadError(refused)
            if self._outage is not None and self._stop.wait(self._backoff):
                return

    def _run(self):
        try:
            while not self._stop.is_set():
                waiting = self._waiting()
                pause = POLL_INTERVAL
                if self._closing and not waiting:
                    break
                if waiting:
                    refused = self._round(waiting)
                    if self._closing and (refused or self._outage is not None):
                        break  # tried once more since the stop: what is left, the next start
                    if refused:
                        pause = REFUSED_RETRY
                    elif self._outage is not None:
                        pause = self._backoff
                    else:
                        continue  # more may have closed meanwhile
                self._wake.wait(pause)
                self._wake.clear()
        except UploadStopped:
            pass
        except Exception as exc:  # a bug: said, never silent; recording goes on
            self.problem = f"the uploader stopped: {type(exc).__name__}: {exc}"
            self.log.error(self.problem)

    def _waiting(self):
        waiting, size, oldest = [], 0, None
        for path in self.pending():
            if path in self._confirmed or self._marked(path):
                continue
            try:
                stat = os.stat(path)
            except OSError:
                continue
            waiting.append(path)
            size += stat.st_size
            oldest = stat.st_mtime if oldest is None else min(oldest, stat.st_mtime)
        self.waiting_files, self.waiting_bytes, self.oldest_waiting = len(waiting), size, oldest
        return waiting

    def _marked(self, path):
        """The store named here confirmed ``path`` (a run before this one, or this one)."""
        mark = marks.read_mark(path)
        if mark is None or any(mark.get(k) != v for k, v in self.target.identity().items()):
            return False
        self._confirmed.add(path)
        return True

    def _round(self, waiting):
        """Send ``waiting`` in order until one fails; the refusal's text, or None."""
        for path in waiting:
            if self._stop.is_set():
                raise UploadStopped()
            try:
                self._send(path)
            except FileNotFoundError:
                continue  # deleted meanwhile (retention, by hand): nothing to send
            except UploadStopped:
                raise
            except Exception as exc:
                self._client = None  # a fresh connection next time
                self.failures += 1
                refused, text = describe_failure(exc, self.target)
                if refused:
                    # in line (the upload command), the caller raises it: said there, once
                    if self.problem != text and self._thread is not None:
                        self.log.error(f"upload: {text}; recording goes on, the files wait "
                                       f"(tried again every {REFUSED_RETRY:g} s)")
                    self.problem = text
                    return text
                if self._outage is None:
                    self.log.warning(f"upload: {text}; the files wait and are sent when it "
                                     "answers again (retried with backoff)")
                    self._outage = text
                else:
                    self._backoff = min(self._backoff * 2, BACKOFF_MAX)
                return None
            if self._outage is not None or self.problem is not None:
                self.log.info(f"upload: {self.target.where} answers again; "
                              f"{plural(max(self.waiting_files - 1, 0), 'file')} still to send")
            self._outage = self.problem = None
            self._backoff = BACKOFF_FIRST
        return None

    # ---- one file ----

    def _send(self, path):
        size = os.path.getsize(path)
        key = self.target.key_for(self.name_of(path), self._start_of(path), self.fields)
        client = self._client = self._client or self.target.client()
        bucket = self.target.bucket
        with open(path, "rb") as file:
            if size <= self.part_size:
                data = file.read()
                digest, checksum = _md5(data), _sha256(data)
                client.put_object(Bucket=bucket, Key=key, Body=self._body(data),
                                  ContentLength=len(data),
                                  ContentMD5=_b64(digest.digest()),
                                  ChecksumAlgorithm=CHECKSUM,
                                  ChecksumSHA256=_b64(checksum.digest()))
                self.sent_bytes += len(data)
                expected = Expected(digest.hexdigest(), _b64(checksum.digest()))
            else:
                expected = self._multipart(client, bucket, key, file, size)
        head = client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
        proof = expected.confirmed_by(head)
        if head.get("ContentLength") != size or proof is None:
            raise UploadMismatch(f"{self.target.where}/{key} holds {head.get('ContentLength')} "
                                 f"bytes ({expected.found(head)}), not {path} whole ({size} "
                                 f"bytes, {expected})")
        marks.write_mark(path, size=size, key=key, etag=_etag(head), confirmed_by=proof,
                         **self.target.identity())
        self.files += 1
        self.bytes += size
        self.last_success = time.time()
        if self.delete:
            marks.remove_with_mark(path)
            self.deleted += 1
        else:
            self._confirmed.add(path)

    def _multipart(self, client, bucket, key, file, size):
        """Send ``file`` in parts (those already on the store from an interrupted upload of
        the same key are kept); what the whole must be (Expected)."""
        upload_id, have = self._interrupted(client, bucket, key)
        if upload_id is None:
            upload_id = client.create_multipart_upload(
                Bucket=bucket, Key=key, ChecksumAlgorithm=CHECKSUM)["UploadId"]
        parts, digests, checksums, number = [], [], [], 0
        while True:
            data = file.read(self.part_size)
            if not data:
                break
            number += 1
            digest, checksum = _md5(data), _sha256(data)
            digests.append(digest.digest())
            checksums.append(checksum.digest())
            part = Expected(digest.hexdigest(), _b64(checksum.digest()))
            stored = have.get(number, {})
            if stored.get("Size") == len(data) and part.confirmed_by(stored):
                self.resumed_parts += 1
                answer = stored
            else:
                answer = client.upload_part(
                    Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number,
                    Body=self._body(data), ContentLength=len(data),
                    ContentMD5=_b64(digest.digest()), ChecksumAlgorithm=CHECKSUM,
                    ChecksumSHA256=part.checksum)
                self.sent_bytes += len(data)
                if part.confirmed_by(answer) is None:
                    raise UploadMismatch(f"{self.target.where}/{key}: part {number} arrived "
                                         f"changed ({part.found(answer)}, not {part})")
            # the store's own ETag of the part (with SSE-KMS it is no MD5)
            parts.append({"PartNumber": number, "ETag": answer["ETag"],
                          "ChecksumSHA256": part.checksum})
        client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                         MultipartUpload={"Parts": parts})
        count = f"-{len(digests)}"
        return Expected(_md5(b"".join(digests)).hexdigest() + count,
                        _b64(_sha256(b"".join(checksums)).digest()) + count)

    def _interrupted(self, client, bucket, key):
        """The newest unfinished multipart upload of ``key`` and its parts {number: the
        store's list_parts entry (Size, ETag, its checksum if kept)}; older ones are aborted (each holds storage), and so is
        one begun without the SHA-256 checksum (by an older version: its parts could not
        take one)."""
        answer = client.list_multipart_uploads(Bucket=bucket, Prefix=key)
        uploads = sorted((u for u in answer.get("Uploads", []) if u["Key"] == key),
                         key=lambda u: u["Initiated"])
        if uploads and uploads[-1].get("ChecksumAlgorithm") != CHECKSUM:
            uploads.append(None)  # a fresh one: every one found is aborted
        for old in uploads[:-1]:
            client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=old["UploadId"])
        if not uploads or uploads[-1] is None:
            return None, {}
        upload_id = uploads[-1]["UploadId"]
        have = {}
        for page in client.get_paginator("list_parts").paginate(
                Bucket=bucket, Key=key, UploadId=upload_id):
            for part in page.get("Parts", []):
                have[part["PartNumber"]] = part
        return upload_id, have

    def _body(self, data):
        return _Body(data, self.limit, self._stop)

    def _start_of(self, path):
        """The file's start for the prefix's strftime fields (read only when it has any): its
        first frame, else its modification time."""
        if "%" not in self.target.prefix:
            return 0.0
        try:
            from ..logfiles.readers import first_timestamp

            start = first_timestamp(path)
        except Exception:  # unreadable: the name still must be fixed by the file
            start = None
        return start if start is not None else os.path.getmtime(path)

    # ---- reporting ----

    def stats(self):
        return {"files": self.files, "bytes": self.bytes, "sent_bytes": self.sent_bytes,
                "resumed_parts": self.resumed_parts, "deleted_files": self.deleted,
                "failures": self.failures, "waiting_files": self.waiting_files,
                "waiting_bytes": self.waiting_bytes,
                "last_success_timestamp": self.last_success or 0.0,
                "unhealthy": self.unhealthy()}

    def unhealthy(self, now=None):
        """Why /healthz should fail ("" when fine): a refusal, or a backlog older than
        ``max_age``."""
        if self.problem:
            return f"upload: {self.problem}"
        oldest = self.oldest_waiting
        if self.max_age and oldest is not None:
            age = (time.time() if now is None else now) - oldest
            if age > self.max_age:
                return (f"upload: {plural(self.waiting_files, 'file')} waiting, the oldest "
                        f"for {age:.0f} s")
        return ""

    def summary(self):
        text = (f"uploaded {plural(self.files, 'file')} ({self.bytes:,} bytes) to "
                f"{self.target.where}")
        if self.last_success:
            text += f", the last at {time.strftime('%H:%M:%S', time.localtime(self.last_success))}"
        if self.waiting_files:
            text += f", {plural(self.waiting_files, 'file')} waiting"
        if self.resumed_parts:
            text += f", {plural(self.resumed_parts, 'part')} resumed"
        if self.deleted:
            text += f", {self.deleted} deleted after upload"
        return text
