"""`edge-liveness` command line: one subcommand per module that owns the work.

The package holds the commands that are not a layer's own (``config``, ``replay``, ``ear``, ...).
Layer: the top; it may import any device layer, and the workstation side (``converters``) only lazily.

Each command module exposes ``add_arguments(parser)`` and ``main(args) -> int``; modules are
imported only when their command runs, so ``edge-liveness run`` never pays for (or imports)
the workstation side's TensorFlow.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("edge_liveness.service.daemon", "run the daemon: camera -> face -> liveness -> decision -> MQTT"),
    "replay": ("edge_liveness.cli.replay_cmd", "run the pipeline on a recording and print what it would decide"),
    "config": ("edge_liveness.cli.config_cmd", "check or show the configuration"),
    "models": ("edge_liveness.vision.modelstore", "fetch and verify the third-party face models"),
    "blinks": ("edge_liveness.cli.blinks_cmd", "score the blink check on annotated videos; train its model"),
    "ear": ("edge_liveness.cli.ear_cmd", "eye aspect ratio of the faces in images"),
    "events": ("edge_liveness.cli.events_cmd", "list the local decision journal (audit log)"),
    "verify": ("edge_liveness.events.verify", "check signed event payloads read from stdin"),
    "status": ("edge_liveness.service.status", "show the running daemon's health"),
    "snapshot": ("edge_liveness.cli.snapshot_cmd", "write one annotated camera frame and print face size, pose and light"),
    "calibrate": ("edge_liveness.cli.calibrate_cmd", "the passive bar for this door's camera, from recordings of its real people"),
    "bench": ("edge_liveness.bench.command", "benchmark the frame loop per stage"),
    "dataset": ("converters.data.dataset", "workstation: cut aligned face crops from videos and images"),
    "train": ("converters.passive.train", "workstation: train the MobileNetV2 liveness model"),
    "convert": ("converters.passive.convert", "workstation: convert a Keras model to TFLite (int8, ...)"),
    "evaluate": ("converters.reports.evaluate", "evaluate a liveness model with ISO/IEC 30107-3 metrics"),
}


def _command_name(argv: list[str]) -> str | None:
    for a in argv:
        if not a.startswith("-"):
            return a
    return None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-liveness", description="Face-liveness daemon for door-access devices.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if only is None or name == only:
            mod = importlib.import_module(module)
            mod.add_arguments(p)
            p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    name = _command_name(argv)
    parser = build_parser(name if name in COMMANDS else None)
    args = parser.parse_args(argv)
    if args.version:
        from importlib.metadata import version

        print(version("edge-liveness"))
        return 0
    if not getattr(args, "_module", None):
        parser.print_help()
        return 2
    mod = importlib.import_module(args._module)
    try:
        return int(mod.main(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # stdout closed early (`| head`): not an error; silence the interpreter's flush at exit.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (OSError, RecursionError) as e:
        # A path or value the user gave that no file can be (10,000 characters, /proc/self/mem, nesting
        # past the stack) reached the system somewhere no command checks for it: one line, not a
        # traceback. Not for `run`: a daemon fault there must exit 1 with its traceback in the
        # journal so that systemd restarts it; the daemon's user input is all checked by load_settings.
        if args._module == COMMANDS["run"][0]:
            raise
        from edge_liveness.config.files import describe_os_error

        what = describe_os_error(e) if isinstance(e, OSError) else "input nested too deeply to read"
        print(f"edge-liveness {name}: {what}", file=sys.stderr)
        return 2
