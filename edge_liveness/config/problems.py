"""One readable line per configuration problem, naming the key, the bound and (when one set it) the
environment variable; secrets are never echoed. Split from ``config.py`` so the settings model stays
one screenful per section; it needs nothing of the model itself.
"""

from __future__ import annotations

import os

from pydantic_settings import SettingsError

ENV_PREFIX = "EDGE_LIVENESS_"


_OP = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}


def env_var_for(loc: tuple | list) -> str | None:
    """The environment variable that set the value at ``loc``, if one did (env beats the file)."""
    parts = [str(p) for p in loc]
    wanted = [ENV_PREFIX + "__".join(parts[:n]).upper() for n in range(len(parts), 0, -1)]
    present = {k.upper(): k for k in os.environ if k.upper().startswith(ENV_PREFIX)}
    return next((present[w] for w in wanted if w in present), None)


_SECRET_KEYS = {("mqtt", "password"), ("security", "signing_key")}


class _Masked:
    def __repr__(self) -> str:
        return "(a secret, not shown)"


def problem_line(err: dict) -> str:
    line = _problem_text(err)
    var = env_var_for(err.get("loc", ()))
    return f"{line} (from environment variable {var})" if var else line


def _problem_text(err: dict) -> str:
    loc = ".".join(str(p) for p in err.get("loc", ())) or "(config)"
    kind = err.get("type", "")
    ctx = err.get("ctx") or {}
    got = err.get("input")
    if tuple(str(p) for p in err.get("loc", ()))[:2] in _SECRET_KEYS:
        got = _Masked()  # a secret of the wrong type must not be echoed into a log
    if kind == "extra_forbidden":
        return f"{loc}: unknown key (check the spelling against config/edge-liveness.toml)"
    if kind in _OP:
        bound = next(iter(ctx.values()), "?")
        if isinstance(bound, float) and bound.is_integer():
            bound = int(bound)
        return f"{loc}: must be {_OP[kind]} {bound} (got {got!r})"
    if kind == "literal_error":
        return f"{loc}: must be one of {ctx.get('expected', '?')} (got {got!r})"
    if kind == "string_pattern_mismatch":
        return f"{loc}: must match {ctx.get('pattern')} (got {got!r})"
    if kind == "missing":
        return f"{loc}: required"
    msg = err.get("msg", "invalid").replace("Input should be", "must be").removeprefix("Value error, ")
    return f"{loc}: {msg} (got {got!r})"


def env_parse_problem(e: SettingsError, settings_cls: type | None = None) -> str:
    """pydantic-settings names the field but not the variable; a whole section, or a list-valued key
    set on its own, must be JSON. ``settings_cls`` (the Settings model) says which keys are lists."""
    import re

    m = re.search(r'field "([^"]+)"', str(e))
    section = m.group(1) if m else ""
    var = env_var_for((section,)) if section else None
    if var is None:
        # a list-valued key set on its own (EDGE_LIVENESS_ACTIVE__BLINK_ALTERNATIVES) must be a JSON list
        prefix = (ENV_PREFIX + section + "__").upper()
        list_keys = _list_keys(settings_cls, section)
        for k, v in sorted(os.environ.items()):
            key = k[len(prefix):].lower() if k.upper().startswith(prefix) else ""
            example = list_keys.get(key)
            if example is not None and not _is_json(v):
                return f"{k}: {section}.{key} must be a JSON list, e.g. {k}='{example}' (got {v!r})"
        return f"environment: {e}"
    return (f"{var}: not a JSON object (a whole section in one variable must be JSON, e.g. {var}='{{\"fps\": 15}}'; "
            f"or set one key: {var}__FPS=15)")


def _is_json(text: str) -> bool:
    import json

    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _list_keys(settings_cls: type | None, section: str) -> dict[str, str]:
    """The list-valued keys of ``section``, each with its default as JSON (the example to show)."""
    import json
    import typing

    fields = getattr(settings_cls, "model_fields", {})
    sec = fields[section].annotation if section in fields else None
    return {name: json.dumps(f.get_default(call_default_factory=True))
            for name, f in getattr(sec, "model_fields", {}).items() if typing.get_origin(f.annotation) is list}
