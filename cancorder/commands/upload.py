"""``cancorder upload DIR s3://BUCKET/PREFIX``: send a folder of recordings (made before, or by
``dump -o``) the way ``--upload`` sends a recording's files, then exit."""
from ..upload.target import add_upload_arguments

SOURCES = {}  # it serves no bus: no source kind of a config file


def add_subparser(subparsers, common):
    parser = subparsers.add_parser(
        "upload", parents=[common], help="send a folder of recordings to S3-compatible storage",
        description="Send every log file below DIR that the store has not confirmed yet, "
                    "oldest first, to s3://BUCKET/PREFIX (the key: PREFIX, then the file's "
                    "path below DIR); a file counts as sent once the store confirms its size "
                    "and checksum. Offline, it retries with backoff; a wrong key or bucket "
                    "ends it with one line (exit 1).")
    parser.add_argument("folder", metavar="DIR", help="the folder of recordings")
    parser.add_argument("url", metavar="s3://BUCKET/PREFIX",
                        help="where to; PREFIX may use {system} and strftime fields (from "
                             "each file's first frame)")
    add_upload_arguments(parser.add_argument_group("upload"), url_flag=False)
    parser.set_defaults(func=_do_upload)
    return parser


def _do_upload(args):
    import logging

    from ..upload.folder import upload_folder

    return upload_folder(args, logging.getLogger("cancorder.upload"))
