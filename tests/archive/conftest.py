# moto S3 server as a process (the upload tests' fixture)
from tests.upload.conftest import s3_server  # noqa: F401
