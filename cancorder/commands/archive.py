"""``cancorder archive mqtt://BROKER/cancorder/+/+ --to DIR|s3://BUCKET/PREFIX``: keep a fleet's
frames as Parquet that DuckDB, Spark, Athena or pandas query (docs/archive.md)."""
from .. import argtypes
from ..upload.target import add_upload_arguments

SOURCES = {}  # it serves no bus: no source kind of a config file

DEFAULT_MAX_SIZE = 64 << 20
DEFAULT_MAX_AGE = 300.0


def add_subparser(subparsers, common):
    from ..discovery import short_hostname

    parser = subparsers.add_parser(
        "archive", parents=[common], help="keep what loggers publish to MQTT as a Parquet lake",
        description="Subscribe to the batches cancorder loggers publish (--mqtt) and write "
                    "them as Parquet files, one row per frame, partitioned "
                    "system=/channel=/date=/hour= in a folder or an S3-compatible bucket. "
                    "Workers started with the same --group share the fleet (an MQTT 5 shared "
                    "subscription); a message is acknowledged to the broker only once the file "
                    "holding it is stored, and a batch written twice replaces its file, so the "
                    "lake holds every frame once.")
    parser.add_argument("url", metavar="mqtt[s]://[USER@]HOST[:PORT]/TOPIC|s3://BUCKET/PREFIX",
                        help="the broker and the loggers' topics, e.g. "
                             "mqtt://broker/cancorder/+/+ (the last two levels name the "
                             "logger and its channel); or the recordings --upload sent, "
                             "s3://BUCKET/PREFIX (archived once each, then it exits)")
    parser.add_argument("--to", required=True, metavar="DIR|s3://BUCKET/PREFIX",
                        help="the lake: a folder, or a bucket and prefix")
    parser.add_argument("--group", metavar="NAME", default=None,
                        help="share the subscription with every worker of this group")
    parser.add_argument("--name", metavar="NAME", default=short_hostname(),
                        help="this worker's name in its group (default: the host's): a "
                             "worker restarted under its name resumes the broker's session "
                             "and what was kept for it")
    parser.add_argument("--max-file-size", metavar="SIZE", default=DEFAULT_MAX_SIZE,
                        type=argtypes.byte_size,
                        help="close a file when its frames reach SIZE as records (default "
                             "64M; the Parquet file is several times smaller)")
    parser.add_argument("--max-file-age", metavar="TIME", default=DEFAULT_MAX_AGE,
                        type=argtypes.duration,
                        help="close a file TIME after its first frame came (default 5min): "
                             "the longest a frame waits to be queryable")
    parser.add_argument("--dbc", metavar="FILE", action="append", default=None,
                        type=argtypes.read_path,
                        help="also write the decoded signals (signals/ table, one row per "
                             "signal value); may be repeated")
    parser.add_argument("--status-interval", metavar="SECONDS", default=10.0, type=float,
                        help="log a status line (frames, files, lag per logger) this often")
    parser.add_argument("--metrics", type=argtypes.listen_address, default=None,
                        metavar="[ADDR:]PORT",
                        help="serve Prometheus metrics on http://ADDR:PORT/metrics: per "
                             "logger (label bus=SYSTEM/CHANNEL) frames received and stored, "
                             "seconds since its newest frame (the lag); files and bytes "
                             "written (default ADDR: every address)")
    from ..mqtt.connection import add_login_arguments

    add_login_arguments(parser.add_argument_group("MQTT login"))
    add_upload_arguments(parser.add_argument_group("S3 store (--to s3://...)"), url_flag=False,
                         store_only=True)
    parser.set_defaults(func=_do_archive)
    return parser


def _do_archive(args):
    import logging
    import threading

    from ..archive.lake import lake_store
    from ..archive.worker import run_archive
    from ..mqtt.connection import settings_from_args
    from ..signals import stop_on_signals

    decoder = None
    if args.dbc:
        from ..dbc import load_databases

        decoder = load_databases(args.dbc)
    stopping = threading.Event()
    if args.url.startswith("s3://"):  # uploaded recordings: one pass, then exit
        from ..archive.recordings import archive_recordings
        from ..report import plural
        from ..upload.target import target_from_args

        source = target_from_args(args, args.url, flag="archive")
        store = lake_store(args, args.to, stopping)
        with stop_on_signals(lambda name: stopping.set()):
            files, frames = archive_recordings(source, store, args.max_file_size, decoder,
                                               stopping)
        logging.getLogger("cancorder.archive").info(
            f"archive: {plural(files, 'recording')} archived ({plural(frames, 'frame')})")
        return 0
    settings = settings_from_args(args, args.url, subscribe=True)
    store = lake_store(args, args.to, stopping)
    with stop_on_signals(lambda name: stopping.set()):
        run_archive(settings, store, args, stopping, decoder)
    return 0
