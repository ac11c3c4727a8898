"""hall-city's one MQTT connection to the city broker: account `hall-city`, a persistent session (QoS 1
alerts published while hall-city was down wait at the broker), subscribed to `city/+/+/#`. Every
message is handed to the hub as received (topic, bytes, retained flag); paho reconnects by itself."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

from hall_controller.bus.tls import client_context
from hall_controller.bus.url import MqttEndpoint

log = logging.getLogger(__name__)

SUBSCRIPTION = "city/+/+/#"
KEEPALIVE = 30


class CityBus:
    def __init__(self, endpoint: MqttEndpoint, on_message: Callable[[str, bytes, bool], None],
                 on_connected: Callable[[bool], None], *, client_id: str = "hall-city") -> None:
        self.endpoint = endpoint
        self.on_message_cb = on_message
        self.on_connected = on_connected
        self.refused: str | None = None
        self.stopping = False
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False,
                                  protocol=mqtt.MQTTv311)
        if endpoint.username:
            self.client.username_pw_set(endpoint.username, endpoint.password)
        if endpoint.tls:
            self.client.tls_set_context(client_context(endpoint.ca))
        self.client.reconnect_delay_set(1, 10)
        self.client.max_inflight_messages_set(100)
        self.client.max_queued_messages_set(0)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    def start(self) -> None:
        self.client.connect_async(self.endpoint.host, self.endpoint.port, keepalive=KEEPALIVE)
        self.client.loop_start()

    def stop(self) -> None:
        self.stopping = True
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            self.refused = str(reason)
            log.error("hall-city: the city broker %s refused us: %s", self.endpoint, reason)
            return
        self.refused = None
        log.info("hall-city: connected to the city broker %s (session present: %s)", self.endpoint,
                 getattr(flags, "session_present", "?"))
        client.subscribe(SUBSCRIPTION, qos=1)
        self.on_connected(True)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if not self.stopping:
            log.warning("hall-city: disconnected from the city broker (%s); reconnecting", reason)
        self.on_connected(False)

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        self.on_message_cb(message.topic, bytes(message.payload), bool(message.retain))
