"""hall-web: the visitor's phone page (DESIGN §10), a process of its own beside the daemon.

An MQTT client of role `web` (hall_controller's client side only) that serves, over aiohttp on the
hall LAN, one page per ticket (`/t/{token}`, the QR on the ticket) and the hall page (`/`), pushed by
Server-Sent Events. The hall's retained state and each open ticket's status are cached here, so a
thousand open pages cost the daemon one subscription and at most one `ticket_status` per ticket and
relevant event.
"""

from __future__ import annotations
