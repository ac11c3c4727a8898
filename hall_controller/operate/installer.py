"""The mechanics of `hallctl install`/`uninstall`: files written under a root, system commands run only
on the live system, one printed line per step.

A file is written only when its bytes, mode or owner differ (so running the install twice changes
nothing, and a restart is asked for only when something did change), atomically (a crash leaves the
old file or the new one), with its mode from the start (a password is never readable by others, not
even for a moment). Owners are set when this process may (root) and the user and group exist; on a
test root they usually do not, and the summary says how many were left.

System-changing steps (useradd, apt-get, systemctl) run only when the root is `/`, we are root and
systemd runs the machine; otherwise each is printed as a `skipped:` line, so a dry run or a test
install shows exactly what the live one would do.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..files import atomic_replace
from .paths import HallPaths

log = logging.getLogger(__name__)

SYSTEMD_RUNNING = Path("/run/systemd/system")   # sd_booted(3): systemd is PID 1


@dataclass(frozen=True)
class Owner:
    """Who owns a path and its mode."""

    user: str
    group: str
    mode: int

    def __str__(self) -> str:
        return f"{self.user}:{self.group} {self.mode:04o}"


ROOT_ONLY = Owner("root", "root", 0o600)
PUBLIC = Owner("root", "root", 0o644)
PUBLIC_DIR = Owner("root", "root", 0o755)


class InstallError(Exception):
    """The install cannot go on; the message says why and what to do (Chinese / English)."""


def live_system(root: Path) -> bool:
    """True when changing the system itself is allowed: root `/`, uid 0, systemd running."""
    return root.resolve() == Path("/") and os.geteuid() == 0 and SYSTEMD_RUNNING.is_dir()


def why_not_live(root: Path) -> str:
    if root.resolve() != Path("/"):
        return f"安装到 --root {root}，不改动本机系统 / installing under --root {root}"
    if os.geteuid() != 0:
        return "需要 root 权限（请用 sudo） / not root"
    return "systemd 未运行 / systemd is not running"


def template(name: str) -> str:
    """A unit, script or snippet shipped in hall_controller/operate/templates."""
    return resources.files(__package__).joinpath("templates", name).read_text(encoding="utf-8")


def bin_dir() -> Path:
    """Where this interpreter's console scripts are (the venv's bin): the units run these."""
    return Path(sys.executable).parent


def program(name: str) -> Path:
    """The absolute path of console script `name` beside this interpreter; InstallError if missing."""
    path = bin_dir() / name
    if not path.exists():
        raise InstallError(f"找不到 {path}：请在安装本软件的 Python 环境中运行（例如 /opt/hall/.venv/bin/hallctl） / "
                           f"{path} not found: run hallctl from the environment the hall software is installed in")
    return path


def hidden_by_sandbox(path: Path) -> str | None:
    """Why a hardened unit could not run `path` (ProtectHome / PrivateTmp hide these folders)."""
    for folder in ("/home", "/root", "/run/user", "/tmp", "/var/tmp"):
        if path == Path(folder) or Path(folder) in path.parents:
            return folder
    return None


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def _ids(owner: Owner) -> tuple[int, int] | None:
    """(uid, gid) when this process may chown and both names exist."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(owner.user).pw_uid, grp.getgrnam(owner.group).gr_gid
    except KeyError:
        return None


class Installer:
    """Writes under `root` and reports each step through `out` (print by default)."""

    def __init__(self, root: Path, *, dry_run: bool = False, out: Callable[[str], None] = print,
                 live: bool | None = None) -> None:
        self.paths = HallPaths(root)
        self.dry_run = dry_run
        self.live = live_system(root) if live is None else live
        self.out = out
        self.changed: set[Path] = set()
        self.unowned: list[Path] = []

    # ------------------------------------------------------------------ reporting
    def say(self, verb: str, what: object, detail: str = "") -> None:
        self.out(f"{verb:<18} {what}{'  ' + detail if detail else ''}")

    def _did(self, path: Path, verb: str, detail: str = "") -> None:
        self.changed.add(path)
        self.say(("将" + verb.split(" ")[0] + " would") if self.dry_run else verb, path, detail)

    def summary(self) -> None:
        if self.unowned:
            self.say("跳过 skipped:", f"设置 {len(self.unowned)} 个文件的属主 / owners of {len(self.unowned)} paths",
                     "（用户或组不存在，或不是 root / the user or group does not exist, or not root）")

    # ------------------------------------------------------------------ files
    def _owner_ok(self, path: Path, owner: Owner) -> bool:
        """Mode (and owner, when we may set it) as asked."""
        st = path.lstat()
        if st.st_mode & 0o7777 != owner.mode:
            return False
        ids = _ids(owner)
        return ids is None or (st.st_uid, st.st_gid) == ids

    def _unowned(self, path: Path, owner: Owner) -> bool:
        """Remember a path whose owner this process cannot set; True if so."""
        if _ids(owner) is not None:
            return False
        if path not in self.unowned:
            self.unowned.append(path)
        return True

    def _set_owner(self, path: Path, owner: Owner, fd: int | None = None) -> None:
        ids = _ids(owner)
        if ids is None:
            self._unowned(path, owner)
            return
        if fd is not None:
            os.fchown(fd, *ids)
        else:
            os.chown(path, *ids, follow_symlinks=False)

    def directory(self, path: Path, owner: Owner) -> bool:
        """Create `path` (and missing parents, root-owned 0755) with `owner`; True if anything changed."""
        if path.is_dir() and not path.is_symlink() and self._owner_ok(path, owner):
            self._unowned(path, owner)
            return False
        self._did(path, "创建 made", str(owner))
        if not self.dry_run:
            path.mkdir(parents=True, exist_ok=True)
            os.chmod(path, owner.mode)
            self._set_owner(path, owner)
        return True

    def file(self, path: Path, data: str | bytes, owner: Owner) -> bool:
        """Write `data` to `path` unless it already holds exactly that with `owner`; True if it changed."""
        raw = data.encode("utf-8") if isinstance(data, str) else data
        if path.is_file() and not path.is_symlink() and path.read_bytes() == raw and self._owner_ok(path, owner):
            self._unowned(path, owner)
            self.say("未改变 unchanged", path)
            return False
        self._did(path, "写入 wrote", str(owner))
        if self.dry_run:
            return True
        with atomic_replace(path, mode=owner.mode, prepare=lambda fd: self._set_owner(path, owner, fd)) as fh:
            fh.write(raw)
        return True

    def fix(self, path: Path, owner: Owner, *, quiet: bool = False) -> bool:
        """Set the owner and mode of a file another part of the hall wrote; True if they changed."""
        if not path.exists():
            return False
        if self._owner_ok(path, owner):
            self._unowned(path, owner)
            return False
        if not self.dry_run:
            os.chmod(path, owner.mode)
            self._set_owner(path, owner)
        if quiet:
            self.changed.add(path)
        else:
            self._did(path, "设置 set", str(owner))
        return True

    def link(self, path: Path, target: str) -> bool:
        """A symbolic link `path` -> `target` (relative targets keep working under a test root)."""
        if path.is_symlink() and os.readlink(path) == target:
            return False
        if path.exists() and not path.is_symlink():
            raise InstallError(f"{path} 已存在且不是链接，请先移走它 / {path} exists and is not a link: move it away")
        self._did(path, "链接 linked", f"-> {target}")
        if not self.dry_run:
            path.unlink(missing_ok=True)
            os.symlink(target, path)
        return True

    def remove(self, path: Path) -> bool:
        """Remove a file, link or folder tree the install wrote; True if it was there."""
        if not path.exists() and not path.is_symlink():
            return False
        self._did(path, "删除 removed")
        if not self.dry_run:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        return True

    # ------------------------------------------------------------------ the system
    def run(self, argv: Sequence[str], *, check: bool = True) -> bool:
        """Run a system command on the live system only; True when it ran and succeeded."""
        line = shlex.join(argv)
        if self.dry_run or not self.live:
            self.say("将执行 would run:" if self.dry_run and self.live else "跳过 skipped:", line)
            return False
        self.say("执行 run:", line)
        result = subprocess.run(list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if result.returncode != 0:
            log.warning("%s failed (%d): %s", line, result.returncode, result.stdout.strip())
            if check:
                raise InstallError(f"命令失败 / command failed: {line}\n{result.stdout.strip()}")
            return False
        return True

    def query(self, argv: Sequence[str]) -> str | None:
        """Output of a read-only command on the live system (None elsewhere or when it fails)."""
        if not self.live:
            return None
        result = subprocess.run(list(argv), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        return result.stdout.strip() if result.returncode == 0 else None

    def ensure_user(self, name: str, groups: list[str], *, home: str, create_home: bool = False) -> None:
        """A system user `name` (with its own group) in those of `groups` that exist."""
        present = [g for g in groups if _group_exists(g)]
        try:
            pwd.getpwnam(name)
        except KeyError:
            self.run(["useradd", "--system", "--user-group", "--home-dir", home,
                      "--create-home" if create_home else "--no-create-home", "--shell", "/usr/sbin/nologin",
                      *(["--groups", ",".join(present)] if present else []), name])
            return
        missing = [g for g in present if name not in grp.getgrnam(g).gr_mem]
        if missing:
            self.run(["usermod", "--append", "--groups", ",".join(missing), name])

    def ensure_packages(self, packages: Sequence[str]) -> None:
        """Debian packages, installed with apt-get when missing (on the live system; listed elsewhere)."""
        missing = [p for p in packages
                   if "install ok installed" not in (self.query(["dpkg-query", "-W", "-f=${Status}", p]) or "")]
        if missing:
            self.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing])

    def ensure_line(self, path: Path, line: str, pattern: str) -> bool:
        """Append `line` to a system file (live system only) unless a line matches `pattern`."""
        if not self.live:
            self.say("跳过 skipped:", f"{path}: {line}")
            return False
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        if re.search(pattern, text, re.MULTILINE):
            return False
        return self.file(path, text + ("" if text.endswith("\n") or not text else "\n") + line + "\n", PUBLIC)
