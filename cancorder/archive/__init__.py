"""``cancorder archive`` (issue 29): a fleet's batches from an MQTT broker into a Parquet lake.
``lake`` (the layout, the keys, the files, the folder and S3 stores), ``worker`` (the shared
subscription, acknowledged once stored)."""
