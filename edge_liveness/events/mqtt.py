"""The MQTT link (paho-mqtt 2.x): availability, state, events, commands, Home Assistant discovery.

Topics under ``<mqtt.topic_prefix>/<device.id>/``:
  availability   retained "online"/"offline" (last will "offline"; "online" on every connect)
  state          retained JSON from ``publish_state``
  events         decisions, QoS 1, not retained
  prompt         challenge prompts, QoS 1, not retained
  set/<name>     commands in; answers on set/<name>/result

paho's own thread (``loop_start``) reconnects with backoff between reconnect_min_s and
reconnect_max_s. Connection problems are logged once per change of state, never raised.
Commands are screened on paho's thread (size, JSON, signature, replay: ``CommandProcessor.screen``)
and only those that pass are queued for a separate thread, which handles them, so a slow handler
never stalls PUBACKs and a forged flood never takes a place in the queue. Unsigned commands (only
with ``security.allow_unsigned_commands``) may fill the queue only up to ``RESERVED_FOR_SIGNED``
places short of full, so a signed one always finds room.
"""

from __future__ import annotations

import json
import logging
import queue
import socket
import ssl
import sys
import threading
from pathlib import Path
from typing import Any, Callable

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from edge_liveness.events.commands import CommandProcessor

log = logging.getLogger("edge_liveness.mqtt")

EVENT_TOPICS = {"decision": "events", "prompt": "prompt"}
COMMAND_QUEUE = 64
RESERVED_FOR_SIGNED = 16  # queue places unsigned commands cannot take


class MqttError(ValueError):
    """The MQTT settings cannot work (missing TLS file, ...); one line naming the fix."""


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("edge-liveness")
    except Exception:
        return "0"


def discovery_messages(settings: Any) -> list[tuple[str, dict[str, Any]]]:
    """Home Assistant MQTT discovery configs: decision event, face-present sensor, fps sensor."""
    dev = settings.device.id
    base = settings.topic_base
    ha = settings.mqtt.ha_prefix.rstrip("/")
    node = f"edge_liveness_{dev}"
    common = {
        "availability_topic": f"{base}/availability", "payload_available": "online",
        "payload_not_available": "offline",
        "device": {"identifiers": [node], "name": f"Door liveness {dev}", "manufacturer": "edge-liveness",
                   "model": "edge-liveness daemon", "sw_version": _version()},
    }
    return [
        (f"{ha}/event/{node}/decision/config", {
            "name": "Liveness decision", "unique_id": f"{node}_decision", "object_id": f"{node}_decision",
            "state_topic": f"{base}/events", "event_types": ["pass", "fail"], "icon": "mdi:face-recognition",
            "value_template": "{{ {'event_type': value_json.result, 'reason': value_json.reason, "
                              "'seq': value_json.seq, 'event_id': value_json.event_id} | to_json }}",
            **common}),
        (f"{ha}/binary_sensor/{node}/face_present/config", {
            "name": "Face present", "unique_id": f"{node}_face_present", "object_id": f"{node}_face_present",
            "state_topic": f"{base}/state", "device_class": "occupancy",
            "value_template": "{{ 'ON' if (value_json.face_present | default(false)) else 'OFF' }}",
            **common}),
        (f"{ha}/sensor/{node}/fps/config", {
            "name": "Frame rate", "unique_id": f"{node}_fps", "object_id": f"{node}_fps",
            "state_topic": f"{base}/state", "unit_of_measurement": "fps", "state_class": "measurement",
            "entity_category": "diagnostic", "value_template": "{{ value_json.fps }}", **common}),
    ]


def _why_failed(exc: BaseException | None, host: str, port: int) -> tuple[str, str]:
    """(state key, one line naming the problem and the fix) for a failed connection attempt."""
    where = f"{host}:{port}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "tls-untrusted", (f"TLS: the certificate of {where} is not trusted ({exc.verify_message}): set "
                                 f"mqtt.ca_file to the CA that signed it")
    if isinstance(exc, ssl.SSLError):
        return "tls", (f"TLS handshake with {where} failed ({exc.reason or exc}): check mqtt.tls, ca_file, "
                       f"cert_file, key_file against the broker's listener")
    if isinstance(exc, ConnectionRefusedError):
        return "refused", f"broker {where} refused the connection (not running, or wrong host/port)"
    if isinstance(exc, socket.gaierror):
        return "dns", f"cannot resolve broker host {host!r}: check mqtt.host"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "timeout", f"connecting to {where} timed out: check the network and mqtt.host/port"
    if isinstance(exc, OSError):
        return f"os-{exc.errno}", f"cannot connect to {where}: {exc.strerror or exc}"
    return "unknown", f"cannot connect to {where}: {exc}"


class MqttLink:
    def __init__(self, settings: Any, on_command: Callable[[str, dict], dict] | None = None,
                 client_id: str | None = None, key: bytes | None = None):
        self.settings = settings
        m = settings.mqtt
        self.cfg = m
        self.base = settings.topic_base
        self.availability_topic = f"{self.base}/availability"
        self.connected = False
        self.connects = 0
        self.reconnects = 0
        self.last_error: str | None = None
        self._state_key: str | None = None
        self._stopping = False
        self._last_state: str | None = None
        self._publish_listeners: list[Callable[[int], None]] = []
        self._connect_listeners: list[Callable[[], None]] = []
        self.commands = CommandProcessor.from_settings(settings, on_command, key=key)
        # The daemon sets this so a disconnect says where events wait (journal or memory).
        self.journal_problem: Callable[[], str | None] | None = None
        self._cmd_queue: queue.Queue[tuple[str, bytes, int | None]] = queue.Queue(COMMAND_QUEUE)
        self._queued_seqs: set[int] = set()  # signed commands waiting in the queue: a copy of one is a replay
        self._queued_lock = threading.Lock()
        self._cmd_thread: threading.Thread | None = None

        cid = client_id or m.client_id or f"edge-liveness-{settings.device.id}"
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=cid, protocol=paho.MQTTv311,
                                  clean_session=True)
        self.client.reconnect_delay_set(m.reconnect_min_s, m.reconnect_max_s)  # type: ignore[arg-type]
        self.client.will_set(self.availability_topic, "offline", qos=1, retain=True)
        if m.username:
            self.client.username_pw_set(m.username, m.password.get_secret_value() or None)
        if m.tls:
            self._setup_tls()
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish

    def _setup_tls(self) -> None:
        m = self.cfg
        for field in ("ca_file", "cert_file", "key_file"):
            value = getattr(m, field)
            if value and not Path(value).is_file():
                raise MqttError(f"mqtt.{field}: {value} not found: give the path of an existing PEM file")
        if bool(m.cert_file) != bool(m.key_file):
            raise MqttError("mqtt.cert_file and mqtt.key_file go together: set both for a client certificate, or neither")
        try:
            self.client.tls_set(ca_certs=m.ca_file or None, certfile=m.cert_file or None, keyfile=m.key_file or None,
                                cert_reqs=ssl.CERT_REQUIRED)
        except (ssl.SSLError, OSError, ValueError) as e:
            raise MqttError(f"mqtt TLS files unusable ({e}): check ca_file/cert_file/key_file are PEM and match")
        if m.tls_insecure:
            log.warning("mqtt.tls_insecure: the broker's host name is NOT checked (never in production)")
            self.client.tls_insecure_set(True)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._cmd_thread = threading.Thread(target=self._command_loop, name="mqtt-commands", daemon=True)
        self._cmd_thread.start()
        log.info("connecting to %s:%d as %s (tls %s)", self.cfg.host, self.cfg.port,
                 self.cfg.username or "anonymous", "on" if self.cfg.tls else "off")
        self.client.connect_async(self.cfg.host, self.cfg.port, self.cfg.keepalive_s)
        self.client.loop_start()

    def stop(self, timeout: float = 2.0) -> None:
        """Say "offline" (retained), then disconnect cleanly (which also discards the last will)."""
        self._stopping = True
        if self.connected:
            try:
                info = self.client.publish(self.availability_topic, "offline", qos=1, retain=True)
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError) as e:
                log.debug("offline not confirmed: %s", e)
        self.client.disconnect()
        self.client.loop_stop()
        self.connected = False
        self._cmd_queue.put(("", b"", None))  # wakes the command thread so it sees _stopping

    # ------------------------------------------------------------------ listeners (publisher)
    def add_publish_listener(self, cb: Callable[[int], None]) -> None:
        self._publish_listeners.append(cb)

    def add_connect_listener(self, cb: Callable[[], None]) -> None:
        self._connect_listeners.append(cb)

    # ------------------------------------------------------------------ publishing
    def publish_event(self, kind: str, text: str) -> paho.MQTTMessageInfo | None:
        """QoS 1, not retained. paho keeps it until PUBACK, across reconnects."""
        topic = f"{self.base}/{EVENT_TOPICS[kind]}"
        try:
            return self.client.publish(topic, text, qos=1, retain=False)
        except (ValueError, RuntimeError) as e:
            log.error("event not handed to MQTT (%s); it stays pending in the journal", e)
            return None

    def publish_state(self, state: dict[str, Any]) -> None:
        text = json.dumps(state, separators=(",", ":"), default=str)
        self._last_state = text
        if self.connected:
            self.client.publish(f"{self.base}/state", text, qos=0, retain=True)

    def answer(self, name: str, result: dict[str, Any]) -> None:
        self.client.publish(f"{self.base}/set/{name}/result", json.dumps(result, default=str), qos=1, retain=False)

    def publish_discovery(self) -> None:
        for topic, cfg in discovery_messages(self.settings):
            self.client.publish(topic, json.dumps(cfg, separators=(",", ":")), qos=1, retain=True)

    # ------------------------------------------------------------------ paho callbacks (paho's thread)
    def _change(self, key: str, level: int, msg: str) -> None:
        """One log line per change of connection state, not per retry."""
        if key != self._state_key:
            log.log(level, "%s", msg)
            self._state_key = key

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.last_error = f"broker {self.cfg.host}:{self.cfg.port} refused the login ({reason_code})"
            fix = ": check mqtt.username and the mqtt_password secret" if reason_code.value in (4, 5, 134, 135) else ""
            self._change(f"connack-{reason_code.value}", logging.ERROR, self.last_error + fix + "; retrying")
            return
        self.connected = True
        self.connects += 1
        if self.connects > 1:
            self.reconnects += 1
        self.last_error = None
        self._change("connected", logging.INFO, f"connected to {self.cfg.host}:{self.cfg.port}"
                     + (f" (reconnect {self.reconnects})" if self.reconnects else ""))
        client.publish(self.availability_topic, "online", qos=1, retain=True)
        client.subscribe(f"{self.base}/set/+", qos=0)
        if self.cfg.ha_discovery:
            client.subscribe(f"{self.cfg.ha_prefix.rstrip('/')}/status", qos=1)
            self.publish_discovery()
        if self._last_state is not None:
            client.publish(f"{self.base}/state", self._last_state, qos=0, retain=True)
        for cb in self._connect_listeners:
            cb()

    def _on_connect_fail(self, client, userdata) -> None:
        # paho calls this inside its `except OSError:`, so the exception is still current.
        exc = sys.exc_info()[1]
        key, msg = _why_failed(exc, self.cfg.host, self.cfg.port)
        self.last_error = msg
        self._change(key, logging.ERROR if key.startswith("tls") else logging.WARNING,
                     f"{msg}; retrying (every {self.cfg.reconnect_min_s:g}..{self.cfg.reconnect_max_s:g} s)")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        was = self.connected
        self.connected = False
        if self._stopping or not was:
            return
        # paho reports every drop it did not ask for as "Unspecified error" (128): say what it means.
        why = "the broker closed it or the network dropped" if getattr(reason_code, "value", 128) in (0, 128) \
            else str(reason_code)
        self.last_error = f"connection lost ({why})"
        problem = self.journal_problem() if self.journal_problem is not None else None
        where = "events wait in memory (the journal is unavailable)" if problem else "events wait in the journal"
        self._change("lost", logging.WARNING, f"connection to {self.cfg.host}:{self.cfg.port} lost ({why}); "
                     f"reconnecting, {where}")

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        for cb in self._publish_listeners:
            cb(mid)

    def _on_message(self, client, userdata, msg: paho.MQTTMessage) -> None:
        topic = msg.topic
        if self.cfg.ha_discovery and topic == f"{self.cfg.ha_prefix.rstrip('/')}/status":
            if msg.payload.strip() == b"online":
                log.info("Home Assistant came online: re-publishing discovery")
                self.publish_discovery()
            return
        prefix = f"{self.base}/set/"
        if not topic.startswith(prefix):
            return
        name = topic[len(prefix):]
        screened = self.commands.screen(name, msg.payload)
        if not screened.passed:
            answer = self.commands.refuse(name, screened.error)
            if answer is not None:
                self.answer(name, answer)
            return
        seq = screened.seq
        answer = None
        with self._queued_lock:
            room = COMMAND_QUEUE if screened.signed else COMMAND_QUEUE - RESERVED_FOR_SIGNED
            if seq is not None and seq in self._queued_seqs:
                answer = self.commands.refuse(name, f"signature check failed: replay: seq {seq} is already "
                                                    f"waiting to be handled")
            elif self._cmd_queue.qsize() >= room:
                answer = {"ok": False, "error": "busy: too many commands queued; try again later"}
            else:
                if seq is not None:
                    self._queued_seqs.add(seq)
                self._cmd_queue.put_nowait((name, msg.payload, seq))
        if answer is not None:
            self.answer(name, answer)

    def _command_loop(self) -> None:
        while not self._stopping:
            try:
                name, payload, seq = self._cmd_queue.get(timeout=1.0)
            except queue.Empty:
                self.commands.gate.tick()  # a flood that stopped says so, with its count
                continue
            if self._stopping:
                break
            result = self.commands.handle(name, payload)
            if seq is not None:
                with self._queued_lock:
                    self._queued_seqs.discard(seq)
            self.commands.gate.tick()
            try:
                self.answer(name, result)
            except (ValueError, RuntimeError) as e:
                log.warning("command %s: answer not sent (%s)", name[:40], e)
