"""Closed recordings to S3-compatible object storage (issue 28): ``target`` (the URL, the
flags, the boto3 client, what an error means), ``uploader`` (the thread: the folder is the
queue, multipart with resume, confirmation, the rate limit). Used by ``--upload`` beside
``--record`` (``sinks/upload.py``) and by ``cancorder upload DIR URL``."""
