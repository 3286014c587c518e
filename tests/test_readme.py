"""The README tells the truth about what the code ships."""

from __future__ import annotations

import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()


def _json_blocks() -> list[str]:
    return re.findall(r"```json\n(.*?)\n```", README, flags=re.S)


def test_readme_links_the_schema_file_instead_of_copying_it():
    assert "](edge_liveness/schemas/event.schema.json)" in README
    assert not any('"$schema"' in b for b in _json_blocks()), "the schema belongs in its file, linked from the README"
    json.loads((REPO / "edge_liveness" / "schemas" / "event.schema.json").read_text())


def test_readme_stays_what_a_newcomer_reads_first():
    """Issue 18: at most about 350 lines; the long material lives in docs/."""
    n = README.count("\n")
    assert n <= 350, f"README.md has {n} lines: move detail to docs/ and link it"


def test_readme_links_point_at_files_that_exist():
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README):
        if "://" in target:
            continue
        assert (REPO / target).exists(), f"README links {target}, which does not exist"


def test_readme_example_payload_is_valid_and_signed():
    import jsonschema

    from edge_liveness.events.verify import verify_event

    schema = json.loads((REPO / "edge_liveness" / "schemas" / "event.schema.json").read_text())
    example = next(json.loads(b) for b in _json_blocks() if '"type": "decision"' in b)
    jsonschema.validate(example, schema)
    key = b"example-device-key-change-me"
    assert verify_event(example, key, max_skew_s=1e12).ok


def test_readme_commands_exist():
    from edge_liveness.cli import COMMANDS

    for name in re.findall(r"`edge-liveness ([a-z]+)", README):
        assert name in COMMANDS, f"README names `edge-liveness {name}`, which does not exist"
