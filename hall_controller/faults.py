"""What people read when a device or a link fails: one fixed Chinese sentence per kind of fault.

Drivers and transports raise errors whose text is for IT staff and the log (`写入失败
socket://127.0.0.1:38989: write failed: [Errno 32] Broken pipe`). A visitor, a clerk or a supervisor
reads a sentence from the tables below instead, chosen by the kind of fault (`fault_reason`); the raw
text goes only to the log of the program that saw it. The daemon publishes these sentences (the
reply's `print_error`, a device's `error` in `device/{id}` and `device_offline`); the apps map their
own failures (camera, request, broker) here and pass anything else they are about to show through
`readable`, so a raw message from an older daemon or an unforeseen path never reaches a screen.
"""

from __future__ import annotations

import errno
import re

from device_profiles import ProfileError
from drivers.transport import DeviceNotFound, NotSupported, TransportError, TransportTimeout

# ------------------------------------------------------------------------------------------- devices

# Kind of fault -> what the hall's staff read (supervisor view, device lists): what is wrong, what to do.
DEVICE_FAULT_TEXTS = {
    "disconnected": "设备连接中断，系统正在自动重连；请检查设备的电源和连线",
    "no_answer": "设备没有应答，系统正在自动重试；请检查设备的电源和连线",
    "not_found": "找不到设备，请确认设备已接好并已开机；仍不行请联系管理员",
    "unsupported": "本机不支持该设备的接入方式，请联系管理员检查设备配置",
    "config": "设备配置有误，请联系管理员检查设备配置",
    "paper_out": "打印机缺纸，请更换打印纸",
    "cover_open": "打印机纸仓盖未关好，请关好纸仓盖",
    "printer_error": "打印机故障，请检查打印机；仍不行请联系管理员",
    "unknown": "设备故障，请联系管理员",
}

# The visitor at the kiosk when no ticket came out (the number was issued all the same).
VISITOR_PRINT_FAILED = "打印机暂时无法出票，请记住您的号码"

# The clerk at the window when the document camera (高拍仪) fails.
CAMERA_FAULT_TEXTS = {
    "disconnected": "拍照失败：高拍仪没有响应，请检查高拍仪的连线和电源后点“重拍”",
    "no_answer": "拍照失败：高拍仪没有响应，请检查高拍仪的连线和电源后点“重拍”",
    "not_found": "拍照失败：找不到高拍仪，请确认高拍仪已接好并已开机后点“重拍”；仍不行请联系管理员",
    "unsupported": "拍照失败：本机无法使用这台高拍仪，请联系管理员检查高拍仪设置",
    "config": "拍照失败：高拍仪设置有误，请联系管理员",
    "image": "拍照失败：照片无法识别，请点“重拍”",
    "unknown": "拍照失败：高拍仪出现故障，请点“重拍”；仍不行请联系管理员",
}

# Every app when the broker refuses its client id or password (it stops retrying: only an
# administrator can fix the password file or the credential store).
AUTH_REFUSED_TEXT = "无法连接服务器：账号或密码被拒绝，请联系管理员"
# … and when the broker's TLS certificate is refused (not from the hall CA the app was given, or issued
# for another name than the one the app connects to); the raw error goes to the app's log.
TLS_REFUSED_TEXT = "无法验证服务器证书，请检查 CA 文件"

_PRINTER_REASONS = {"paper_out": "paper_out", "cover_open": "cover_open", "error": "printer_error"}
_ABSENT = frozenset({errno.ENOENT, errno.ENODEV, errno.ENXIO, errno.ECONNREFUSED, errno.EHOSTUNREACH,
                     errno.ENETUNREACH})


def fault_reason(exc: BaseException) -> str:
    """The kind of fault an error of a driver, a transport or the device link stands for."""
    reason = getattr(exc, "reason", None)
    if isinstance(exc, TransportError) and isinstance(reason, str) and reason in _PRINTER_REASONS:
        return _PRINTER_REASONS[reason]                       # drivers.printer.PrinterError
    if isinstance(exc, DeviceNotFound):
        return "not_found"
    if isinstance(exc, NotSupported):
        return "unsupported"
    if isinstance(exc, TransportTimeout | TimeoutError):
        return "no_answer"
    if isinstance(exc, TransportError):
        return "disconnected"
    if isinstance(exc, ProfileError):
        return "config"
    if isinstance(exc, OSError):                              # the emulator's control API, a socket
        return "not_found" if exc.errno in _ABSENT or _reason_errno(exc) in _ABSENT else "disconnected"
    if isinstance(exc, LookupError):                          # no such device (in the emulator)
        return "not_found"
    if isinstance(exc, ValueError):
        return "config"
    return "unknown"


def _reason_errno(exc: OSError) -> int | None:
    """urllib's URLError keeps the socket error in `reason`."""
    inner = getattr(exc, "reason", None)
    return inner.errno if isinstance(inner, OSError) else None


def device_fault_text(exc: BaseException | None) -> str:
    """The staff's sentence for a device that failed with `exc`."""
    return DEVICE_FAULT_TEXTS[fault_reason(exc)] if exc is not None else DEVICE_FAULT_TEXTS["unknown"]


def camera_fault_text(exc: BaseException) -> str:
    """The clerk's sentence for a capture that failed with `exc`."""
    return CAMERA_FAULT_TEXTS.get(fault_reason(exc), CAMERA_FAULT_TEXTS["unknown"])


# ------------------------------------------------------------------------------------------- screens

_CJK = re.compile(r"[\u4e00-\u9fff]")
# What gives a raw error away: a library's words, an errno, a URL or path, a Python value.
_RAW = re.compile(r"errno|traceback|exception|error|failed|failure|refused|timed? ?out|broken pipe|"
                  r"://|/dev/|\bNone\b|\bb'|0x[0-9a-f]|\[\d+\]|[A-Za-z_]+\.[A-Za-z_]+\(", re.IGNORECASE)


def readable(text: object, fallback: str) -> str:
    """`text` if it is a Chinese sentence without raw error text in it, else `fallback`: the last check
    before a message of unknown origin (a daemon's reply, a driver's error) is put on a screen."""
    if isinstance(text, str) and _CJK.search(text) and not _RAW.search(text):
        return text.strip()
    return fallback
