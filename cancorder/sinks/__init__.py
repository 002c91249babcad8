"""The consumers of a bus's records besides its ECUconnect clients (``base`` is their interface,
``registry`` names them, one module each: printer, recorder, socketcand, mqtt)."""
