"""Queue domain: pure rules, no I/O."""

from __future__ import annotations

from .engine import RATING_DIMENSIONS, CardData, Outcome, QueueEngine
from .model import ACTIVE, FINAL, STATUSES, Actor, DomainError, EngineState, Ticket, WindowState

__all__ = ["ACTIVE", "FINAL", "RATING_DIMENSIONS", "STATUSES", "Actor", "CardData", "DomainError",
           "EngineState", "Outcome", "QueueEngine", "Ticket", "WindowState"]
