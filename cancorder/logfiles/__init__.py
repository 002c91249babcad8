"""Log files, read and written: one home for everything a path on disk means.

- ``formats``: THE table of formats (extension -> reader, writer, gzip, what CAN FD loses);
- ``naming``: path templates (strftime, ``{channel} {interface} {port} {n}``) and ``.part``;
- ``writers``: one open file written from wire records (candump by the compiled encoder,
  every other format through python-can);
- ``rotation``: ``RotatingLog`` (rotation, retention, a full disk) and the recording options;
- ``recording``: ``Recording``, the clients' in-line recording (``dump -o``, ``mock-uds
  --output``);
- ``readers``: ``LogRecords``, every format python-can reads into wire records.
"""
