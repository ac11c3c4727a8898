"""Test helpers: valid ID numbers and a thin driver over the pure engine."""

from __future__ import annotations

from hall_controller.domain import CardData, QueueEngine
from hall_controller.identity import check_digit


def id_number(birth: str = "19800101", serial: str = "123", region: str = "310101") -> str:
    first17 = region + birth + serial
    return first17 + check_digit(first17)


def card(name: str = "张三", birth: str = "19800101", serial: str = "123") -> CardData:
    return CardData(name=name, id_number=id_number(birth, serial))


class EngineHall:
    """Drive the engine like the daemon does, returning ticket numbers for readable scenarios."""

    def __init__(self, config, clock):
        self.engine = QueueEngine(config, clock, secret=b"test-secret")
        self.clock = clock

    def issue(self, service: str, **kwargs) -> str:
        return self.engine.issue_ticket(service, **kwargs).result["ticket"]["number"]

    def login(self, window: int, staff: str) -> None:
        self.engine.login(window, staff, "1234")

    def next(self, window: int) -> str | None:
        ticket = self.engine.call_next(window, finish_current=True).result["ticket"]
        return ticket["number"] if ticket else None

    def drain(self, window: int) -> list[str]:
        order = []
        while (number := self.next(window)) is not None:
            order.append(number)
        return order

    def ticket(self, number: str):
        return next(t for t in self.engine.state.tickets.values() if t.number == number)
