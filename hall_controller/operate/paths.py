"""Where an installed hall keeps its files (DESIGN §12), in one place.

`HallPaths(root)` puts the whole tree under `root` so that tests (and a dry run) install into a
temporary folder; production uses the root `/`. The files written there name the production paths
(`/etc/hall/…`), as a package's files do: `root` is where they are put, not what they say.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# The production locations the installed files refer to (unit files, the installed config).
ETC = "/etc/hall"
STATE = "/var/lib/hall"
CONFIG = f"{ETC}/hall.yaml"
APP_PASSWORD = f"{ETC}/app-password"
APP_CA = f"{ETC}/tls/ca.crt"
CLIENT_PASSWORDS = f"{ETC}/client-passwords.yaml"
DAEMON_PASSWORD = f"{ETC}/daemon-password"
WEB_PASSWORD = f"{ETC}/web-password"   # hall-web's MQTT password, handed over by systemd like the daemon's
SESSION_SCRIPT = "/usr/local/lib/hall/hall-session"


@dataclass(frozen=True)
class HallPaths:
    root: Path = Path("/")

    def at(self, path: str) -> Path:
        """The production path `path` under this root."""
        return self.root / path.lstrip("/")

    @property
    def etc(self) -> Path:
        """Config, hall secret, credentials, client passwords, TLS files: root:hall, not world-readable."""
        return self.at(ETC)

    @property
    def config(self) -> Path:
        return self.at(CONFIG)

    @property
    def install_options(self) -> Path:
        """What `hallctl install` was last given (LANs, host names), so that running it again needs none."""
        return self.etc / "install.yaml"

    @property
    def secret(self) -> Path:
        return self.etc / "hall.secret"

    @property
    def credentials(self) -> Path:
        """MQTT client password hashes (the daemon reads them: root:hall 0640)."""
        return self.etc / "credentials.yaml"

    @property
    def client_passwords(self) -> Path:
        """Clear client passwords (setup_hall.passwords_path of the installed config): root only."""
        return self.at(CLIENT_PASSWORDS)

    @property
    def daemon_password(self) -> Path:
        """The daemon's own MQTT password (its line of client-passwords.yaml), root only: systemd hands
        the daemon a copy (`LoadCredential=mqtt-password:…`)."""
        return self.at(DAEMON_PASSWORD)

    @property
    def web_password(self) -> Path:
        return self.at(WEB_PASSWORD)

    @property
    def runtime_link(self) -> Path:
        """`<secret's folder>/run`, where the daemon records its broker address (daemon.runtime_path):
        a link into the state folder, since the daemon may not write under /etc."""
        return self.etc / "run"

    @property
    def state(self) -> Path:
        """The database, scans, runtime file: owned by the `hall` user."""
        return self.at(STATE)

    @property
    def database(self) -> Path:
        return self.state / "hall.db"

    @property
    def runtime(self) -> Path:
        return self.state / "run"

    @property
    def backups(self) -> Path:
        return self.state / "backups"

    @property
    def tls(self) -> Path:
        """Hall CA and the broker's certificate (`hallctl tls init`)."""
        return self.etc / "tls"

    @property
    def mosquitto_files(self) -> Path:
        """Password file, ACL (`hallctl mqtt-config`) and the broker's certificate and key for Debian's
        Mosquitto: beside its config, where its own user can read them (root:mosquitto 0640); the
        hall's /etc/hall stays closed to it."""
        return self.at("/etc/mosquitto/hall")

    @property
    def mosquitto_conf(self) -> Path:
        """The listener snippet Debian's mosquitto.conf includes (`include_dir /etc/mosquitto/conf.d`)."""
        return self.at("/etc/mosquitto/conf.d/hall.conf")

    @property
    def mosquitto_main_conf(self) -> Path:
        return self.at("/etc/mosquitto/mosquitto.conf")

    @property
    def units(self) -> Path:
        return self.at("/etc/systemd/system")

    @property
    def nftables(self) -> Path:
        return self.at("/etc/nftables.d/hall.nft")

    @property
    def nftables_conf(self) -> Path:
        """Debian's firewall rules file (nftables.service loads it); the install adds an include line."""
        return self.at("/etc/nftables.conf")

    @property
    def app_password(self) -> Path:
        """An app PC's MQTT password: root-only, handed to the app by systemd (LoadCredential)."""
        return self.at(APP_PASSWORD)

    @property
    def app_config(self) -> Path:
        """An app PC's settings (`hallctl install --app`): role, client id, server, CA."""
        return self.etc / "app.yaml"

    @property
    def app_ca(self) -> Path:
        """The hall CA an app PC checks the broker's certificate against."""
        return self.at(APP_CA)

    @property
    def session_script(self) -> Path:
        """The X session of a kiosk, display or tablet PC: the app, restarted when it exits."""
        return self.at(SESSION_SCRIPT)

    @property
    def xorg_snippet(self) -> Path:
        """No VT switching and no Ctrl-Alt-Backspace on an app PC's X server."""
        return self.at("/etc/X11/xorg.conf.d/50-hall-kiosk.conf")

    @property
    def autostart(self) -> Path:
        """The window PC's desktop starts the window terminal at login (XDG autostart)."""
        return self.at("/etc/xdg/autostart/hall-window.desktop")
