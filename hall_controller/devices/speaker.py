"""The speaker handler: the announcer of one PA zone, playing through a supervised speaker driver.

Calls and recalls reach the announcer through a service subscription (it only enqueues: events are
delivered while the service publishes); the announcer's worker composes each announcement from the
clip pack and plays it through ``link.driver`` to its end. While the speaker is offline the queue
waits and ages under the late policy; a failed play takes the link down so the DeviceLink reopens
it with backoff, and the announcer retries once it is back (see hall_controller.voice.announcer).
At start the calls the event log shows unannounced (queued or playing when the daemon last stopped
or was killed) are queued again first, under the same late policy.

Device options: ``zone`` (default the device id) and ``windows`` (the windows announced in this
zone; default all), for halls with several PA zones.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from drivers.base import SpeakerDriver
from drivers.transport import TransportError

from ..config import DeviceConfig
from ..voice.announcer import RECOVERY_EVENTS, Announcer, LatePolicy, recovery_since
from ..voice.composer import Composed
from ..voice.settings import composer_for
from .handler import DeviceHandler, HandlerContext, handles
from .link import DeviceLink

log = logging.getLogger(__name__)


@handles("speaker")
class SpeakerHandler(DeviceHandler):
    def __init__(self, ctx: HandlerContext, device: DeviceConfig, members: Sequence[DeviceConfig]) -> None:
        super().__init__(ctx, device, members)
        voice = ctx.config.voice
        self.link = ctx.link(device, SpeakerDriver, on_up=self._on_up)
        windows = device.options.get("windows")
        self.announcer = Announcer(
            composer_for(voice), ctx.service.clock, self._play, ctx.service.announcement_event,
            zone=str(device.options.get("zone") or device.id), repeat=voice.repeat, chime=voice.chime,
            policy=LatePolicy(voice.max_wait_seconds, voice.drop_after_seconds),
            windows=windows, device=device.id,
            ready=self._ready)

    def start(self) -> None:
        self.listen(self.announcer.on_event)
        self._recover()
        self.announcer.start()
        self.link.start()

    def _recover(self) -> None:
        """Queue again what the last run left unsaid; a store that cannot be read only loses that."""
        service = self.ctx.service
        try:
            since = recovery_since(service.clock.now(), self.ctx.config.tz, self.announcer.queue.policy)
            self.announcer.recover(service.store.recent_events(since, RECOVERY_EVENTS))
        except Exception:
            log.exception("%s: cannot read the calls left unannounced at the last stop", self.id)

    def stop(self) -> None:
        self.stop_listening()
        self.announcer.stop()
        self.link.stop()  # closing the driver ends an announcement still playing
        self.announcer.join()

    def stats(self) -> dict[str, float]:
        return {"announcements_queued": self.announcer.queued()}

    def _ready(self) -> bool:
        """Open and settled: a serial server that accepts and drops at once (a pulled cable behind a
        TCP bridge) must not use up the attempts of the calls waiting for it."""
        return self.link.online and self.link.driver is not None

    def _on_up(self, link: DeviceLink[SpeakerDriver]) -> None:
        self.announcer.wake()

    def _play(self, composed: Composed, meta: dict[str, Any]) -> None:
        driver = self.link.driver
        if driver is None:
            raise TransportError("扬声器离线")
        try:
            driver.play(composed.wav, meta)
        except TransportError as exc:
            self.link.report_failure(exc)
            raise
