import pytest


@pytest.fixture
def s3_server():
    """moto's S3 server as a process; stopped by its pid at teardown."""
    from tests.upload.s3 import MotoServer

    server = MotoServer()
    yield server
    server.stop()
