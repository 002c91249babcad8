"""``--mqtt-signals --dbc FILE``: each decoded message as JSON on ``TOPIC/signals/MESSAGE``, at
most ``rate`` times a second per message (a 1 kHz message does not flood the broker), and with
``--mqtt-homeassistant`` a Home Assistant MQTT discovery config per signal (retained; removed
by empty retained payloads when the logger stops cleanly).

    {"timestamp": 1700000000.123456, "signals": {"EngineSpeed": {"value": 1234.5, "unit": "rpm"}}}

The publisher (mqtt/publisher.py) hands each batch of records here in its own thread; only a
frame whose message is due is decoded (a dict lookup and a clock comparison for the others).
Values are live data: published at QoS 0 while connected, never spooled.
"""
import json
import re

from .._fast import wire

DISCOVERY_PREFIX = "homeassistant"


class SignalTopics:
    """What the publisher publishes beside the records: ``due(records, now)`` -> [(topic,
    payload)], ``discovery()`` and ``removals()`` for Home Assistant."""

    def __init__(self, signals, rate, homeassistant=False):
        self.signals = signals  # dbc.SignalDecoder
        self.interval = 1.0 / rate
        self.homeassistant = homeassistant
        self.topic = None
        self.node = "cancorder"
        self._next = {}  # message name -> monotonic time it may be published again
        self._decoder = wire.StreamDecoder()
        self.published = 0

    def start(self, topic, txt):
        self.topic = topic
        self.node = _object_id(f"cancorder_{txt.get('system', '')}_{topic}")

    def due(self, records, now):
        """The messages in ``records`` whose time has come, decoded."""
        out = []
        message_for = self.signals.message_for
        next_at = self._next
        for micros, can_id, flags, data in self._decoder.feed(records):
            message = message_for(can_id, flags)
            if message is None or next_at.get(message.name, 0.0) > now:
                continue
            decoded = self.signals.decode(can_id, flags, data)
            if decoded.error:
                continue
            next_at[message.name] = now + self.interval
            out.append((f"{self.topic}/signals/{decoded.name}", _payload(micros, decoded)))
        self.published += len(out)
        return out

    def discovery(self):
        """(config topic, retained JSON) for every signal of every message of the databases."""
        out = []
        device = {"identifiers": [self.node], "name": f"cancorder {self.topic}",
                  "manufacturer": "cancorder"}
        for message_name, signals in sorted(self.signals.signal_units().items()):
            for signal_name, unit in sorted(signals.items()):
                object_id = _object_id(f"{self.node}_{message_name}_{signal_name}")
                config = {"name": f"{message_name} {signal_name}",
                          "unique_id": object_id,
                          "state_topic": f"{self.topic}/signals/{message_name}",
                          "value_template": "{{ value_json.signals['%s'].value }}" % signal_name,
                          "device": device}
                if unit:
                    config["unit_of_measurement"] = unit
                out.append((f"{DISCOVERY_PREFIX}/sensor/{object_id}/config",
                            json.dumps(config, sort_keys=True)))
        return out

    def removals(self):
        """An empty retained payload on each config topic: Home Assistant removes the entity."""
        return [(topic, b"") for topic, _ in self.discovery()]


def _payload(micros, decoded):
    from ..dbc import json_value

    units = decoded.units
    body = json.dumps({"signals": {name: {"value": json_value(value), "unit": units.get(name, "")}
                                   for name, value in decoded.signals.items()}})
    # the time as text with six decimals, like dump's json (no float rounding)
    return f'{{"timestamp": {micros // 1000000}.{micros % 1000000:06d}, {body[1:]}'


def _object_id(text):
    """Home Assistant's object ids: letters, digits, _ and -."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")
