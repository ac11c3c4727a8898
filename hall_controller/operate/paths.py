"""Where an installed hall keeps its files (DESIGN §12), in one place.

`HallPaths(root)` puts the whole tree under `root` so that tests (and a dry run) install into a
temporary folder; production uses the root `/`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class HallPaths:
    root: Path = Path("/")

    def _at(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    @property
    def etc(self) -> Path:
        """Config, hall secret, credentials, client passwords, TLS files: root:hall, not world-readable."""
        return self._at("/etc/hall")

    @property
    def config(self) -> Path:
        return self.etc / "hall.yaml"

    @property
    def state(self) -> Path:
        """The database, scans, runtime file: owned by the `hall` user."""
        return self._at("/var/lib/hall")

    @property
    def backups(self) -> Path:
        return self.state / "backups"

    @property
    def tls(self) -> Path:
        """Hall CA and the broker's certificate (`hallctl tls init`)."""
        return self.etc / "tls"

    @property
    def mosquitto_files(self) -> Path:
        """Password file and ACL written by `hallctl mqtt-config` for Debian's Mosquitto."""
        return self.etc / "mosquitto"

    @property
    def mosquitto_conf(self) -> Path:
        """The listener snippet Debian's mosquitto.conf includes (`include_dir /etc/mosquitto/conf.d`)."""
        return self._at("/etc/mosquitto/conf.d/hall.conf")

    @property
    def units(self) -> Path:
        return self._at("/etc/systemd/system")

    @property
    def nftables(self) -> Path:
        return self._at("/etc/nftables.d/hall.nft")

    @property
    def app_password(self) -> Path:
        """An app PC's MQTT password: root-only, handed to the app by systemd (LoadCredential)."""
        return self.etc / "app-password"

    @property
    def app_config(self) -> Path:
        """An app PC's settings (`hallctl install --app`): role, client id, server, CA."""
        return self.etc / "app.yaml"
