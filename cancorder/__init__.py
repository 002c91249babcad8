"""cancorder: a CAN bus logger proxy speaking the ECUconnect Logger wire format."""

__version__ = "0.1.0"
