"""One readable line per configuration problem, naming the key, the bound and (when one set it) the
environment variable; secrets are never echoed. Split from ``config.py`` so the settings model stays
one screenful per section; it needs nothing of the model itself.
"""

from __future__ import annotations

import difflib
import os
import reprlib

from pydantic_settings import SettingsError

ENV_PREFIX = "EDGE_LIVENESS_"


_OP = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}


def env_var_for(loc: tuple | list) -> str | None:
    """The environment variable that set the value at ``loc``, if one did (env beats the file)."""
    parts = [str(p) for p in loc]
    wanted = [ENV_PREFIX + "__".join(parts[:n]).upper() for n in range(len(parts), 0, -1)]
    present = {k.upper(): k for k in os.environ if k.upper().startswith(ENV_PREFIX)}
    return next((present[w] for w in wanted if w in present), None)


_SECRET_KEYS = {("mqtt", "password"), ("security", "signing_key"), ("web", "token")}


class _Masked:
    def __repr__(self) -> str:
        return "(a secret, not shown)"


# What a problem line echoes of the bad value: enough to recognise it, never a 10,000-character dump
# or a 5,000-deep list (whose full repr would itself overflow the stack).
_shown = reprlib.Repr()
_shown.maxstring, _shown.maxother, _shown.maxlevel, _shown.maxlist, _shown.maxdict = 60, 60, 3, 6, 6


class _Got(str):
    """An already-shortened repr that ``{got!r}`` prints as it is."""

    def __repr__(self) -> str:
        return str(self)


def problem_line(err: dict, layout: dict[str, set[str]] | None = None) -> str:
    """``layout`` (section -> its keys) lets an unknown key set by a variable name the nearest real one."""
    line = _problem_text(err)
    loc = tuple(str(p) for p in err.get("loc", ()))
    var = env_var_for(loc)
    if not var:
        return line
    if err.get("type") == "extra_forbidden" and layout and len(loc) == 2 and loc[0] in layout:
        key = _nearest(loc[1], layout[loc[0]])
        whole_section = var.upper() == ENV_PREFIX + loc[0].upper()  # EDGE_LIVENESS_CAMERA='{"fsp": 3}'
        near = f"the key {key!r} in {var}" if whole_section else f"{ENV_PREFIX}{loc[0].upper()}__{key.upper()}"
        return f"{'.'.join(loc)}: unknown key (from environment variable {var}): did you mean {near}?"
    return f"{line} (from environment variable {var})"


def _problem_text(err: dict) -> str:
    loc = ".".join(str(p) for p in err.get("loc", ())) or "(config)"
    kind = err.get("type", "")
    ctx = err.get("ctx") or {}
    got = err.get("input")
    if tuple(str(p) for p in err.get("loc", ()))[:2] in _SECRET_KEYS:
        got = _Masked()  # a secret of the wrong type must not be echoed into a log
    got = _Got(_shown.repr(got))
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
                return f"{k}: {section}.{key} must be a JSON list, e.g. {k}='{example}' (got {_shown.repr(v)})"
        return "environment: " + " ".join(str(e).split())[:300]
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


def unknown_env_problems(layout: dict[str, set[str]]) -> list[str]:
    """One line per ``EDGE_LIVENESS_<SECTION>__<KEY>`` variable naming no section of ``layout`` (section
    -> its keys), with the nearest valid variable: pydantic-settings ignores such a variable,
    so a typo would silently leave the setting at its default. Tooling variables share the prefix
    (EDGE_LIVENESS_SHARED_DATA, ...): one without ``__`` counts only when it holds a JSON object, as a
    whole section set in one variable does."""
    out = []
    for var, value in sorted(os.environ.items()):
        if not var.upper().startswith(ENV_PREFIX):
            continue
        parts = var[len(ENV_PREFIX):].lower().split("__")
        section = parts[0]
        if len(parts) == 1:
            if section in layout or not value.lstrip().startswith("{"):
                continue
            near = _nearest(section, layout)
            out.append(f"{var}: no config section {section!r}: did you mean {ENV_PREFIX}{near.upper()}?")
        elif section not in layout:  # an unknown key of a known section is pydantic's to report (problem_line)
            near = _nearest(section, layout)
            key = parts[1] if parts[1] in layout[near] else _nearest(parts[1], layout[near])
            out.append(f"{var}: no config section {section!r}: did you mean {ENV_PREFIX}{near.upper()}__{key.upper()}?")
    return out


def _nearest(word: str, names: set[str] | dict[str, set[str]]) -> str:
    return max(sorted(names), key=lambda n: difflib.SequenceMatcher(None, word, n).ratio())


def deep_env_problem() -> str:
    """pydantic-settings parses JSON values of the variables; one nested past the stack gives RecursionError."""
    nested = {k: v.count("[") + v.count("{") for k, v in os.environ.items() if k.upper().startswith(ENV_PREFIX)}
    var = max(nested, key=nested.__getitem__, default=None)
    if var is None or nested[var] == 0:
        return "environment: a value is nested too deeply: give a flat JSON value"
    return f"{var}: nested too deeply ({nested[var]} brackets): a config value needs a few levels at most"
