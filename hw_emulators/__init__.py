"""Emulated hall devices speaking the real devices' bytes, so the hall runs before hardware arrives.

``hall.EmulatedHall`` builds them from the hall config; ``link`` carries their bytes over a pty, TCP
or in-process; ``dory`` is the RS-485 window bus (controller, LED screens, keypads); ``control``
serves the control API and dashboard; ``cli`` is ``hall-emu``; ``mgmt`` emulates the upstream
management system.
"""
