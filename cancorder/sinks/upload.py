"""``--upload s3://BUCKET/PREFIX`` beside ``--record``: the closed files of each recording sent
to object storage (``upload.uploader``) from a thread of its own. It reads nothing from the bus:
the recording's index (``logfiles.index``, the files that recording made, every run of it) is
its queue, so it knows the recorder only through the folder."""
import os

from ..errors import UsageError
from ..upload.target import add_upload_arguments, target_from_args
from .base import RecordSink, recording_fields


class UploadSink(RecordSink):
    metrics_name = "upload"  # cancorder_upload_<stat>{bus} on the metrics page
    CLOSE_WAIT = 10.0  # on a stop: the most spent sending what waits (the last file); a part
    # still being sent then is abandoned, and resumed on the next start

    @classmethod
    def add_arguments(cls, parser):
        add_upload_arguments(parser.add_argument_group("upload of the recordings"))

    @classmethod
    def factories(cls, args):
        """One uploader per ``--record PATH`` (the URL and the flags checked now)."""
        records = args.record if isinstance(args.record, list) else [args.record]
        records = [path for path in records if path]
        if not args.upload:
            given = [flag for flag, value in (
                ("--upload-endpoint", args.upload_endpoint), ("--upload-ca", args.upload_ca),
                ("--upload-profile", args.upload_profile), ("--upload-limit", args.upload_limit),
                ("--upload-delete", args.upload_delete), ("--upload-max-age", args.upload_max_age))
                if value]
            if given:
                raise UsageError(f"{given[0]} applies to an upload: add --upload URL")
            return []
        if not records:
            raise UsageError("--upload sends the files of a recording: add --record PATH")
        target = target_from_args(args, args.upload)
        return [lambda bus, server_options, path=path: cls(target, path, args)
                for path in records]

    def __init__(self, target, record_path, args):
        self.target = target
        self.record_path = record_path
        self.delete = args.upload_delete
        self.limit = args.upload_limit
        self.max_age = args.upload_max_age
        self.uploader = None
        self._index = None
        self._listed = (None, [])  # (the index's stat, its files): read again when it changes

    def start(self, bus):
        from ..logfiles.index import RecordingIndex
        from ..logfiles.naming import PathTemplate
        from ..upload.uploader import Uploader

        template = PathTemplate(self.record_path, recording_fields(bus))
        self._index = RecordingIndex(template)
        folder = self._index.folder
        fields = {"system": bus.txt.get("system"), "channel": bus.channel,
                  "interface": bus.interface}
        self.uploader = Uploader(self.target, self._closed_files,
                                 lambda path: os.path.relpath(path, folder), fields, bus.log,
                                 delete=self.delete, limit=self.limit, max_age=self.max_age)
        self.uploader.start()

    def _closed_files(self):
        """The recording's finished files, oldest first (its index, read again only when it
        changed: a new file)."""
        try:
            stat = os.stat(self._index.path)
            seen = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        except OSError:
            seen = None
        if seen != self._listed[0] or seen is None:
            self._listed = (seen, self._index.paths())
        return [path for path in self._listed[1] if os.path.isfile(path)]

    def put(self, records):
        pass  # it sends files, not frames

    def close(self, timeout=5.0):
        if self.uploader is not None:
            # the recorder, closed before (registry order), has finished its last file
            self.uploader.close(max(timeout, self.CLOSE_WAIT))

    def stats(self):
        return self.uploader.stats() if self.uploader is not None else {}

    def summary(self):
        return self.uploader.summary() if self.uploader is not None else ""
