"""Hall bus: the MQTT contract (DESIGN §5), credentials, broker configuration, client and daemon bridge."""
