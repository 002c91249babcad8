"""``cancorder archive s3://BUCKET/raw/ --to ...``: the recording files ``--upload`` and
``cancorder upload`` sent (offline vehicles) into the same lake as the live ones.

Each recording is read with the log file readers (every format cancorder reads) and written as
batches of a made-up session: its id from the recording's key, its sequence numbers counting
the file's batches, so archiving a file again writes the same keys (it replaces, never doubles).
A recording done is marked in the lake (``_recordings/KEY``, with its ETag): a later run skips
it unless the object changed. The key below the prefix names the logger: ``SYSTEM/.../NAME``
(the upload's ``{system}/{channel}`` prefix), the channel from the file where it names one.
"""
import hashlib
import json
import logging
import os
import tempfile
import urllib.parse

from .._fast import wire
from ..errors import UsageError
from ..mqtt.payload import Batch
from .lake import LakeWriter

log = logging.getLogger("cancorder.archive")

MARKS = "_recordings"


def session_of(bucket, key):
    """A recording's made-up session id: the same for the same object, always."""
    return int.from_bytes(hashlib.sha256(f"{bucket}/{key}".encode()).digest()[:8], "big")


def logger_of_key(relative, channel_label):
    levels = relative.split("/")
    system = levels[0] if len(levels) > 1 else "recordings"
    channel = channel_label or (levels[1] if len(levels) > 2 else "can")
    return system, str(channel)


def recording_keys(client, target):
    """(key, etag) of every log file below the target's prefix, oldest first."""
    from ..logfiles.formats import read_format

    prefix = target.prefix.strip("/")
    found = []
    for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=target.bucket, Prefix=f"{prefix}/" if prefix else ""):
        for item in page.get("Contents", []):
            name = item["Key"].rsplit("/", 1)[-1]
            if name.startswith("."):
                continue  # confirmation marks, temporary names
            try:
                read_format(name)
            except UsageError:
                continue
            found.append((item["LastModified"], item["Key"], item["ETag"]))
    return [(key, etag) for _, key, etag in sorted(found)]


def archive_recordings(target, store, max_size, decoder=None, stopping=None):
    """Archive every recording not archived yet; returns (files archived, frames)."""
    from ..logfiles.readers import LogRecords

    client = target.client()
    prefix = target.prefix.strip("/")
    done = frames = 0
    writer = LakeWriter(store, max_size, float("inf"), decoder)
    for key, etag in recording_keys(client, target):
        if stopping is not None and stopping.is_set():
            break
        mark = f"{MARKS}/{urllib.parse.quote(key, safe='')}.json"
        previous = store.read(mark)
        if previous is not None and json.loads(previous).get("etag") == etag:
            continue
        relative = key[len(prefix) + 1:] if prefix else key
        session = session_of(target.bucket, key)
        with tempfile.TemporaryDirectory(prefix="cancorder-archive-") as folder:
            path = os.path.join(folder, key.rsplit("/", 1)[-1])
            client.download_file(target.bucket, key, path)
            reader = LogRecords(path)
            sequence = first = 0
            for channel, records in reader.batches(by_channel=True):
                decoded = wire.StreamDecoder().feed(records)
                if not decoded:
                    continue
                sequence += 1
                system, channel = logger_of_key(relative, channel)
                writer.add(system, channel, Batch(session, sequence, first, len(decoded),
                                                  decoded), None)
                first += len(decoded)
            writer.close_all()  # a file's rows never wait for the next file: same keys each run
        store.put(mark, json.dumps({"etag": etag, "frames": first}).encode())
        log.info(f"archive: {key}: {first:,} frames")
        done += 1
        frames += first
    return done, frames
