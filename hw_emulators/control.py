"""The emulator control API (DESIGN §9) and the IT staff dashboard, over stdlib HTTP.

Routes::

    GET    /                          dashboard page (dashboard.html)
    GET    /state                     everything the dashboard shows
    GET    /devices                   [{"id","kind","url","address"?,"window"?,"kiosk"?}]
    POST   /{kind}/{id}/fault         {"mode": disconnect|silent|corrupt|delay|…, "ms"?}
    DELETE /{kind}/{id}/fault
    *      /{kind}/{ref}[/{action}[/…]]   the routes the kind's emulator class declares, e.g.
           GET /led/{addr}[?bus=ID], POST /keypad/{addr}/press, POST /card-reader/{id}/insert

``{kind}`` is the device kind with ``-`` for ``_``; ``{ref}`` is the device id, or its bus address
for kinds looked up by address. Nothing here names a kind: the emulator classes carry their routes.

Errors are JSON ``{"error": {"code": ..., "message": ...}}`` with status 400, 404, 405 or 501.
"""

from __future__ import annotations

import json
import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from .device import AmbiguousDevice, DeviceNotFound, FaultError, RawResponse, Request
from .registry import emulator_for

if TYPE_CHECKING:
    from .hall import EmulatedHall

logger = logging.getLogger(__name__)

MAX_BODY = 64 * 1024


class ApiError(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.split("/") if p]
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            body = self._body() if method == "POST" else {}
            if method == "GET" and not parts:
                self._send(HTTPStatus.OK, self.server.dashboard, "text/html; charset=utf-8")
                return
            result = self._route(method, parts, query, body)
            if isinstance(result, RawResponse):
                self._send(HTTPStatus.OK, result.data, result.content_type)
            else:
                self._json(HTTPStatus.OK, result)
        except ApiError as exc:
            self._json(exc.status, {"error": {"code": exc.status.phrase.lower().replace(" ", "_"),
                                              "message": exc.message}})
        except Exception:
            logger.exception("control API %s %s failed", method, self.path)
            self._json(HTTPStatus.INTERNAL_SERVER_ERROR,
                       {"error": {"code": "internal_server_error", "message": "仿真器内部错误，详见其日志"}})

    def _route(self, method: str, parts: list[str], query: dict[str, str], body: dict[str, Any]) -> Any:
        api = self.server.api
        fixed = {("state",): api.state, ("devices",): api.devices}
        if tuple(parts) in fixed:
            if method != "GET":
                raise ApiError(HTTPStatus.METHOD_NOT_ALLOWED, "此接口只支持 GET")
            return fixed[tuple(parts)]()
        if len(parts) < 2:
            raise ApiError(HTTPStatus.NOT_FOUND, f"没有这个接口：/{'/'.join(parts)}")
        kind, ref = parts[0].replace("-", "_"), parts[1]
        action, rest = (parts[2] if len(parts) > 2 else ""), tuple(parts[3:])
        request = Request(body, query, rest)
        if action == "fault" and not rest:
            methods = {"POST": lambda: api.set_fault(kind, ref, query.get("bus"), body),
                       "DELETE": lambda: api.clear_fault(kind, ref, query.get("bus"))}
        else:
            methods = api.device_routes(kind, action)
        if not methods:
            raise ApiError(HTTPStatus.NOT_FOUND, f"没有这个接口：/{'/'.join(parts)}")
        if method not in methods:
            raise ApiError(HTTPStatus.METHOD_NOT_ALLOWED, f"此接口只支持 {' 或 '.join(methods)}")
        if action == "fault" and not rest:
            return methods[method]()
        device = api.lookup(kind, ref, query.get("bus"))
        try:
            return getattr(device, methods[method])(request)
        except ValueError as exc:
            raise ApiError(HTTPStatus.BAD_REQUEST, str(exc)) from exc

    def _body(self) -> dict[str, Any]:
        length_text = self.headers.get("Content-Length") or "0"
        if not length_text.isdigit() or int(length_text) > MAX_BODY:
            self.close_connection = True  # the unread body would garble the next request
            raise ApiError(HTTPStatus.BAD_REQUEST, "Content-Length 无效或过大")
        length = int(length_text)
        raw = self.rfile.read(length) if length else b""
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ApiError(HTTPStatus.BAD_REQUEST, f"请求体不是有效的 JSON：{exc}") from exc
        if not isinstance(body, dict):
            raise ApiError(HTTPStatus.BAD_REQUEST, "请求体须为 JSON 对象")
        return body

    def _json(self, status: HTTPStatus, payload: Any) -> None:
        self._send(status, json.dumps(payload, ensure_ascii=False).encode(), "application/json; charset=utf-8")

    def _send(self, status: HTTPStatus, data: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)


class ControlApi:
    """The operations behind the routes, kept apart from HTTP parsing."""

    def __init__(self, hall: EmulatedHall) -> None:
        self.hall = hall

    def state(self) -> dict[str, Any]:
        return self.hall.state()

    def devices(self) -> list[dict[str, Any]]:
        return self.hall.listing()

    def device_routes(self, kind: str, action: str) -> dict[str, str]:
        """HTTP method -> device method name for ``/{kind}/{ref}/{action}``."""
        cls = emulator_for(kind)
        if cls is None:
            return {}
        return {method: name for (method, act), name in cls.routes.items() if act == action}

    def lookup(self, kind: str, ref: str, bus: str | None) -> Any:
        if ref in self.hall.pending and self.hall.pending[ref]["kind"] == kind:
            raise ApiError(HTTPStatus.NOT_IMPLEMENTED, f"{ref}：这类设备暂未仿真")
        try:
            return self.hall.find(kind, ref, bus)
        except DeviceNotFound as exc:
            raise ApiError(HTTPStatus.NOT_FOUND, str(exc)) from exc
        except (AmbiguousDevice, ValueError) as exc:
            raise ApiError(HTTPStatus.BAD_REQUEST, str(exc)) from exc

    def _device(self, kind: str, ref: str, bus: str | None) -> Any:
        """Faults name a device by id; bus devices may also be named by address."""
        if ref in self.hall.devices or ref in self.hall.pending:
            if ref in self.hall.pending and self.hall.pending[ref]["kind"] == kind:
                raise ApiError(HTTPStatus.NOT_IMPLEMENTED, f"{ref}：这类设备暂未仿真")
            device = self.hall.devices.get(ref)
            if device is None or device.kind != kind:
                actual = device.kind if device else self.hall.pending[ref]["kind"]
                raise ApiError(HTTPStatus.NOT_FOUND, f"{ref} 是 {actual}，不是 {kind}")
            return device
        cls = emulator_for(kind)
        if cls is None or cls.lookup != "address" or not ref.isdigit():
            raise ApiError(HTTPStatus.NOT_FOUND, f"没有仿真设备 {ref!r}")
        return self.lookup(kind, ref, bus)

    def set_fault(self, kind: str, ref: str, bus: str | None, body: dict[str, Any]) -> dict[str, Any]:
        device = self._device(kind, ref, bus)
        mode = body.get("mode")
        if not isinstance(mode, str):
            raise ApiError(HTTPStatus.BAD_REQUEST, "缺少 mode：disconnect、silent、corrupt 或 delay")
        try:
            fault = device.set_fault(mode, body.get("ms"))
        except FaultError as exc:
            raise ApiError(HTTPStatus.BAD_REQUEST, str(exc)) from exc
        return {"id": device.id, "fault": fault.as_dict()}

    def clear_fault(self, kind: str, ref: str, bus: str | None) -> dict[str, Any]:
        device = self._device(kind, ref, bus)
        device.clear_fault()
        return {"id": device.id, "fault": None}


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], api: ControlApi, dashboard: bytes) -> None:
        super().__init__(address, _Handler)
        self.api = api
        self.dashboard = dashboard


class ControlServer:
    """Runs the HTTP server on its own thread."""

    def __init__(self, hall: EmulatedHall, host: str, port: int) -> None:
        dashboard = resources.files(__package__).joinpath("dashboard.html").read_bytes()
        self._server = _Server((host, port), ControlApi(hall), dashboard)
        # A short poll keeps stop() (and the hall's shutdown on SIGTERM) prompt.
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="emu-control", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._thread.start()
        logger.info("control API at http://%s:%d/", *self.address)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=2)
