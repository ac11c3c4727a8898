"""The card reader handler: a card read at a kiosk's reader goes to the service for that kiosk.

The reader's driver polls on its own thread and calls ``on_card`` once per card put on it. The
service keeps the card for the kiosk's next ``issue_ticket {use_card}`` and publishes a masked view
(or, for a card that cannot be used, the Chinese reason) on ``hall/{h}/kiosk/{k}/card``. The driver's
``on_card_removed`` (the card left with its holder: the service starts its idle time) and
``on_card_failed`` (taken away mid-read or unreadable: nothing kept, the kiosk says what to do) go
to the service the same way. Neither this module nor its log ever holds more of the card than the
service hands out.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from drivers.base import CardReaderDriver
from drivers.codecs.gat467 import BaseInfo

from ..config import DeviceConfig
from ..domain import CardData
from .handler import DeviceHandler, HandlerContext, handles
from .link import DeviceLink

log = logging.getLogger(__name__)


@handles("card_reader")
class CardReaderHandler(DeviceHandler):
    """Supervises one reader; its config's ``kiosk`` names where the cards are read.

    Device option ``poll_ms`` polls more slowly than the profile's minimum (never faster).
    """

    def __init__(self, ctx: HandlerContext, device: DeviceConfig, members: Sequence[DeviceConfig]) -> None:
        super().__init__(ctx, device, members)
        if device.kiosk is None:
            log.warning("%s is not assigned to a kiosk: its cards are ignored", device.id)
        self.link = ctx.link(device, CardReaderDriver, on_up=self._on_up, on_card=self._on_card,
                             on_card_removed=self._on_card_removed, on_card_failed=self._on_card_failed,
                             poll_ms=device.options.get("poll_ms"))

    def start(self) -> None:
        self.link.start()

    def stop(self) -> None:
        self.link.stop()

    def _on_up(self, link: DeviceLink[CardReaderDriver]) -> None:
        """Nothing to restore on a reader: a card still lying on it is read again by the new driver."""

    def _on_card(self, info: BaseInfo) -> None:
        kiosk = self.device.kiosk
        if kiosk is None:
            return
        card = CardData(name=info.name, id_number=info.id_number, sex=info.sex, birth=info.birth,
                        nation=info.nation, address=info.address, issuer=info.issuer,
                        valid_from=info.valid_from, valid_to=info.valid_to, photo=info.photo)
        try:
            view = self.ctx.service.card_inserted(kiosk, card)
        except Exception:
            log.exception("%s: card could not be handed to kiosk %s", self.id, kiosk)
            return
        log.info("%s: card at %s: %s", self.id, kiosk,
                 "usable" if view.get("usable") else f"refused ({view.get('reason')})")

    def _on_card_removed(self) -> None:
        kiosk = self.device.kiosk
        if kiosk is None:
            return
        try:
            self.ctx.service.card_removed(kiosk)
        except Exception:
            log.exception("%s: card removal could not be handed to kiosk %s", self.id, kiosk)

    def _on_card_failed(self, why: str) -> None:
        kiosk = self.device.kiosk
        if kiosk is None:
            return
        log.info("%s: card at %s not read (%s)", self.id, kiosk, why)
        try:
            self.ctx.service.card_read_failed(kiosk, why)
        except Exception:
            log.exception("%s: failed card read could not be handed to kiosk %s", self.id, kiosk)
