"""The UDS-on-CAN simulator behind ``cancorder mock-uds``.

Three layers, each unaware of the one above it:

- scenario.py (with ecu.py and vehicle.py) decides what is said: OBD-II polling, a reprogramming
  session, negative responses and how the tester reacts to them;
- isotp.py turns each message into CAN frames (ISO 15765-2), with the receiver's flow control;
- clock.py says when: a virtual clock the other two advance, and a pacer for serving live.

simulation.py puts them together into one timeline of entries ``(t_us, kind, value)``:
FRAME (a frame ``(can_id, flags, data)``: wire flags, integer microseconds, no Message), NOTE (a sentence for -v) and CYCLE (the start of OBD polling + session
number ``value``: where the live source waits for a client). The scenario also marks the
boundaries between exchanges (BOUNDARY), which only simulation.timeline sees.
"""
FRAME = 0
NOTE = 1
CYCLE = 2
BOUNDARY = 3
