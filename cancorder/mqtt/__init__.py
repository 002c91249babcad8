"""Publishing buses to an MQTT broker and reading them back (issue 14).

    url        mqtt:// and mqtts:// URLs, credentials, TLS, a paho client, error messages
    payload    one MQTT message = a small header + ECUconnect records (docs/mqtt.md, "Payload")
    spool      the outbox of batches not yet acknowledged: on disk (--mqtt-spool) or memory
    publisher  the RecordSink that batches, spools and publishes (own thread)
    subscriber dedup and gap detection, the subscribing client used by dump and relay
"""
