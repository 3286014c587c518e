#!/usr/bin/env python3
"""Example integrator subscriber: show edge-liveness challenge prompts and results on a door panel.

It subscribes to ``<prefix>/<device>/prompt`` and ``<prefix>/<device>/events``, checks each
payload's HMAC signature and sequence number (``edge_liveness.events.verify.Verifier``; unsigned or replayed
payloads are ignored, so nobody on the broker can make the panel show fake instructions), and drives
three outputs:

* a display line ("Please: turn left, then nod  (10 s)"; "Welcome" / "Not verified"),
* an LED (on while a prompt is open, then green-for-pass / off),
* a buzzer (one short beep on a prompt, two on a failure).

The outputs here print to stdout. On a Raspberry Pi, ``--gpio-led 17 --gpio-buzzer 27`` drives real
pins through gpiozero (``pip install gpiozero``; imported only when asked). Replace ``Panel`` with
your own display code; everything else can stay.

Do not show the decision's ``reason`` to the person at the door: "spoof_suspected" vs "no_blink"
tells an attacker which layer caught them (see docs/decision.md, "Early failure and what it leaks").

    python scripts/prompt_subscriber.py --host 127.0.0.1 --device door1 --key-file /etc/edge-liveness/signing_key
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from pathlib import Path
from typing import Any

WORDS = {"blink": "blink", "turn_left": "turn left", "turn_right": "turn right", "nod": "nod"}


class Panel:
    """Display + LED + buzzer. The default prints; GPIO pins when given."""

    def __init__(self, led_pin: int | None = None, buzzer_pin: int | None = None):
        self.led = self.buzzer = None
        if led_pin is not None or buzzer_pin is not None:
            try:
                import gpiozero  # only on the device, only when asked
            except ImportError:
                sys.exit("gpiozero is not installed: pip install gpiozero, or leave out --gpio-led/--gpio-buzzer")
            self.led = gpiozero.LED(led_pin) if led_pin is not None else None
            self.buzzer = gpiozero.Buzzer(buzzer_pin) if buzzer_pin is not None else None

    def show(self, text: str) -> None:
        print(f"[display] {text}", flush=True)

    def light(self, on: bool) -> None:
        if self.led is not None:
            self.led.on() if on else self.led.off()
        print(f"[led] {'on' if on else 'off'}", flush=True)

    def beep(self, times: int = 1) -> None:
        if self.buzzer is not None:
            self.buzzer.beep(on_time=0.1, off_time=0.1, n=times, background=True)
        print(f"[buzzer] {times} beep(s)", flush=True)


def prompt_text(body: dict[str, Any]) -> str:
    """'Please: turn left, then nod  (10 s)' from a prompt payload."""
    actions = [WORDS.get(a, str(a)) for a in body.get("actions", [])]
    total = float(body.get("step_timeout_s", 0)) * len(actions)
    return f"Please: {', then '.join(actions)}  ({total:.0f} s)"


class Door:
    """What the panel does with each verified payload; one attempt at a time."""

    def __init__(self, panel: Panel):
        self.panel = panel
        self.attempt: str | None = None
        self.timer: threading.Timer | None = None

    def on_prompt(self, body: dict[str, Any]) -> None:
        self._cancel()
        self.attempt = body.get("attempt_id")
        self.panel.show(prompt_text(body))
        self.panel.light(True)
        self.panel.beep(1)
        # Clear the panel if no decision comes (device restarted mid-attempt): steps + a margin.
        wait = float(body.get("step_timeout_s", 5)) * max(1, len(body.get("actions", []))) + 5.0
        self.timer = threading.Timer(wait, self._clear)
        self.timer.daemon = True
        self.timer.start()

    def on_decision(self, body: dict[str, Any]) -> None:
        self._cancel()
        ok = body.get("result") == "pass"
        self.panel.show("Welcome" if ok else "Not verified - step back and try again")
        self.panel.light(ok)
        if not ok:
            self.panel.beep(2)
        self.attempt = None

    def _clear(self) -> None:
        self.attempt = None
        self.panel.show("")
        self.panel.light(False)

    def _cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


def handle(door: Door, verifier, topic: str, payload: bytes) -> str:
    """Verify and dispatch one message; return what happened (for logs and tests)."""
    res = verifier.check(payload) if verifier is not None else None
    if res is not None and not res.ok:
        return f"ignored ({res.reason})"
    try:
        body = json.loads(payload)
    except ValueError:
        return "ignored (not JSON)"
    if not isinstance(body, dict):
        return "ignored (not a JSON object)"
    body = body.get("body", body) if isinstance(body.get("body"), dict) else body  # flat or nested envelope
    if topic.endswith("/prompt"):
        door.on_prompt(body)
        return "prompt"
    if topic.endswith("/events"):
        door.on_decision(body)
        return "decision"
    return "ignored (topic)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=1883)
    ap.add_argument("--prefix", default="edge-liveness", help="mqtt.topic_prefix of the device")
    ap.add_argument("--device", required=True, help="device.id of the door device")
    ap.add_argument("--key-file", help="the device's signing key (security.signing_key); without it nothing is verified")
    ap.add_argument("--username")
    ap.add_argument("--password-file")
    ap.add_argument("--gpio-led", type=int)
    ap.add_argument("--gpio-buzzer", type=int)
    args = ap.parse_args(argv)

    import paho.mqtt.client as mqtt

    verifier = None
    if args.key_file:
        from edge_liveness.events.verify import Verifier
        try:
            key = Path(args.key_file).read_bytes().rstrip(b"\r\n")
        except OSError as e:
            print(f"{args.key_file}: cannot read the signing key ({e.strerror}): give the device's key file", file=sys.stderr)
            return 2
        verifier = Verifier(key)
    else:
        print("warning: no --key-file: prompts are NOT verified, anyone on the broker can drive this panel",
              file=sys.stderr)

    door = Door(Panel(args.gpio_led, args.gpio_buzzer))
    base = f"{args.prefix.rstrip('/')}/{args.device}"
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    if args.username:
        pw = Path(args.password_file).read_text().strip() if args.password_file else None
        client.username_pw_set(args.username, pw)

    def on_connect(c, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            print(f"broker refused the connection: {reason_code}", file=sys.stderr)
            return
        c.subscribe([(f"{base}/prompt", 1), (f"{base}/events", 1)])

    def on_message(c, userdata, msg):
        print(f"{msg.topic}: {handle(door, verifier, msg.topic, msg.payload)}", file=sys.stderr)

    client.on_connect = on_connect
    client.on_message = on_message
    try:
        client.connect(args.host, args.port, keepalive=30)
    except OSError as e:
        print(f"cannot reach the broker at {args.host}:{args.port} ({e}): check --host/--port", file=sys.stderr)
        return 2
    try:
        client.loop_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
