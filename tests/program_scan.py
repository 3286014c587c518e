"""Finds the programs outside Python that source files run, for tests/test_ci_programs.py.

Python: every `shutil.which("x")` and the program of every `subprocess.run/Popen/...` and `os.exec*`,
followed back through variables, module constants, `for` loops, helper functions and `str()`/`+`/`or`
to a literal. Shell: every command word, with wrappers (sudo, timeout, env, a function that runs "$@")
seen through, and what `$(...)`, backticks and `bash -c '...'` run scanned as scripts of their own.
A static reading, so it errs on the side of naming more: what it cannot follow back it reports.
"""
from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SUBPROCESS_CALLS = {"run", "Popen", "call", "check_call", "check_output"}
PROGRAM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


# ---------------------------------------------------------------- Python: which() and subprocess programs

def _scopes(tree: ast.AST) -> dict[ast.AST, list[ast.AST]]:
    """Each node's enclosing function definitions, innermost first, then the module."""
    out: dict[ast.AST, list[ast.AST]] = {}

    def walk(node: ast.AST, chain: list[ast.AST]) -> None:
        for child in ast.iter_child_nodes(node):
            out[child] = chain
            walk(child, [child, *chain] if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else chain)
    walk(tree, [tree])
    return out


def _bindings(scope: ast.AST, name: str) -> list[ast.AST] | None:
    """The values `name` is given in `scope` (assignments, augmented ones, `for` targets); None if none."""
    found: list[ast.AST] = []
    for node in ast.walk(scope):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            found.append(node.value)
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)) and isinstance(node.target, ast.Name) \
                and node.target.id == name and node.value is not None:
            found.append(node.value)
        elif isinstance(node, ast.For) and isinstance(node.target, ast.Name) and node.target.id == name:
            found.append(ast.Starred(value=node.iter))  # every element of the iterable
    return found or None


def _is_which(node: ast.AST) -> bool:
    f = node.func if isinstance(node, ast.Call) else None
    return isinstance(f, ast.Attribute) and f.attr == "which" or isinstance(f, ast.Name) and f.id == "which"


def _resolve(node: ast.AST, scopes: list[ast.AST], depth: int = 0) -> set[str] | None:
    """The programs an expression for argv[0] (or an argv list) can name; empty: this Python or a
    repository file; None: not followed back to a literal."""
    if depth > 12:
        return None
    again = lambda n: _resolve(n, scopes, depth + 1)  # noqa: E731
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {Path(node.value).name} if PROGRAM.match(Path(node.value).name) else set()
    if "sys.executable" in ast.unparse(node) or re.search(r"\bREPO\b|__file__", ast.unparse(node)):
        return set()  # the venv's Python and its entry points, or a file of this repository
    if isinstance(node, (ast.List, ast.Tuple)):
        for elt in node.elts:
            got = again(elt.value if isinstance(elt, ast.Starred) else elt)
            if isinstance(elt, ast.Starred) and not got:
                continue  # an optional prefix (`*(prefix or [])`): the next element may be the program
            return got
        return set()
    if isinstance(node, ast.Starred) and isinstance(node.value, (ast.List, ast.Tuple)):
        parts = [again(e) for e in node.value.elts]
        return None if any(p is None for p in parts) else set().union(*parts)
    if isinstance(node, ast.Starred):
        return again(node.value)
    if isinstance(node, ast.Call) and _is_which(node):
        return again(node.args[0]) if node.args else None
    if isinstance(node, ast.Call) and ast.unparse(node.func) in ("str", "Path", "os.fspath"):
        return again(node.args[0]) if node.args else None
    if isinstance(node, ast.Call) and ast.unparse(node.func) in ("os.environ.get", "os.getenv") and len(node.args) > 1:
        return again(node.args[1])
    if isinstance(node, ast.BinOp):
        return again(node.left)
    if isinstance(node, ast.Constant) and node.value is None:
        return set()
    if isinstance(node, ast.IfExp):
        node = ast.BoolOp(op=ast.Or(), values=[node.body, node.orelse])
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        defs = [d for d in ast.walk(scopes[-1]) if isinstance(d, ast.FunctionDef) and d.name == node.func.id]
        returns = [r.value for d in defs for r in ast.walk(d) if isinstance(r, ast.Return) and r.value is not None]
        if returns:  # a helper of this module that finds the program: what it returns
            parts = [_resolve(r, [defs[0], *scopes], depth + 1) for r in returns]
            return None if any(p is None for p in parts) else set().union(*parts)
    if isinstance(node, ast.BoolOp):
        parts = [again(v) for v in node.values]
        return None if all(p is None for p in parts) else set().union(*(p for p in parts if p))
    if isinstance(node, ast.Subscript):
        return again(node.value)
    if isinstance(node, ast.Name):
        for scope in scopes:
            values = _bindings(scope, node.id)
            if values is not None:
                parts = [again(v) for v in values]
                return None if any(p is None for p in parts) else set().union(*parts)
        return None
    return None


def python_programs(path: Path) -> tuple[dict[str, set[str]], list[str]]:
    """{program: {file:line, ...}} of one Python file, and the calls whose program was not found."""
    tree = ast.parse(path.read_text(), str(path))
    scopes = _scopes(tree)
    found: dict[str, set[str]] = {}
    unresolved: list[str] = []
    rel = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        f = node.func
        spawn = isinstance(f, ast.Attribute) and (
            f.attr in SUBPROCESS_CALLS and ast.unparse(f.value) == "subprocess"
            or f.attr.startswith(("exec", "spawn")) and ast.unparse(f.value) == "os")
        if not (spawn or _is_which(node)):
            continue
        arg = node.args[1] if spawn and f.attr.startswith(("exec", "spawn")) and len(node.args) > 1 else node.args[0]
        programs = _resolve(arg, scopes[node] if node in scopes else [tree])
        if programs is None:
            unresolved.append(f"{rel}:{node.lineno}: {ast.unparse(node)[:100]}")
            continue
        for p in programs:
            found.setdefault(p, set()).add(f"{rel}:{node.lineno}")
    return found, unresolved


# ---------------------------------------------------------------- shell: command words

KEYWORDS = {"if", "then", "else", "elif", "fi", "case", "esac", "for", "while", "until", "do", "done", "in",
            "function", "select", "time", "{", "}", "!"}
BUILTINS = {"echo", "printf", "read", "cd", "set", "export", "local", "return", "exit", "source", ".", "eval",
            "test", "[", "true", "false", "shift", "trap", "wait", "declare", "typeset", "unset", "readonly", "let",
            "pwd", "type", "hash", "getopts", "mapfile", "readarray", "break", "continue", "kill", "builtin",
            "ulimit", "umask", "alias", ":", "exec", "command"}
WRAPPERS = {"sudo", "exec", "nohup", "nice", "env", "timeout", "xargs", "setpriv", "unshare", "stdbuf", "ionice",
            "time", "command"}
TAKES_VALUE = {"-n", "-s", "-k", "-I", "-u", "-P", "-o", "-e", "-c", "--propagation"}


def _close(text: str, i: int, open_: str, close: str) -> int:
    """The index just after the `close` that balances the `open_` before i, skipping quoted text."""
    depth = 1
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c in "'\"`":
            j = text.find(c, i + 1)
            i = len(text) if j < 0 else j + 1
            continue
        if text.startswith(close, i) and (depth := depth - 1) == 0:
            return i + len(close)
        if text.startswith(open_, i):
            depth += 1
        i += 1
    return len(text)


class ShellScan:
    """Splits a script into simple commands. Quoted text, `${...}` and `$(...)` become `$` in the command
    they sit in (a value), while what `$(...)`, backticks and `bash -c '...'` run is scanned as a script
    of its own; comments, here-documents, `[[ ]]`, arithmetic and case patterns are left out."""

    def __init__(self) -> None:
        self.segments: list[str] = []
        self.arrays: dict[str, str] = {}

    def scan(self, text: str) -> None:
        text = re.sub(r"(?m)(^\s*(?:[^\s;()]+\|)*[^\s;()|]+\)|(?<=\bin\s)\s*[^\s;()]+\)|(?<=;;)\s*[^\s;()]+\))",
                      " ", _strip_heredocs(text))  # case patterns: `a|b)` at a line start, after `in` or `;;`
        buf, i = [], 0
        def flush() -> None:
            if "".join(buf).strip():
                self.segments.append("".join(buf))
            buf.clear()
        while i < len(text):
            c, at_word = text[i], i == 0 or text[i - 1] in " \t\n;|&(){}"
            if c == "#" and at_word:
                i = text.find("\n", i) if "\n" in text[i:] else len(text)
            elif c == "\\":
                buf.append(text[i:i + 2])
                i += 2
            elif c == "'":
                j = text.find("'", i + 1) if "'" in text[i + 1:] else len(text)
                if re.search(r"\b(bash|sh)\s+-c\s*$", "".join(buf)):
                    self.scan(text[i + 1:j])
                buf.append("$")
                i = j + 1
            elif c == '"':
                j = i + 1
                while j < len(text) and text[j] != '"':
                    if text[j] == "\\":
                        j += 2
                    elif text.startswith("$((", j):
                        j = self._arith(text, j + 3)
                    elif text.startswith("$(", j):
                        k = _close(text, j + 2, "(", ")")
                        self.scan(text[j + 2:k - 1])
                        j = k
                    elif text[j] == "`":
                        k = text.find("`", j + 1)
                        self.scan(text[j + 1:k])
                        j = k + 1
                    else:
                        j += 1
                body = text[i + 1:j]
                if re.fullmatch(r"\$\{\w+\[@\]\}", body):
                    buf.append(body)  # an array that holds a command and its options ("${NICE[@]}" cmd)
                else:
                    buf.append(shlex.quote(body) if "$" not in body and "`" not in body else "$")
                i = j + 1
            elif text.startswith("$((", i) or (at_word and text.startswith("((", i)):
                i = self._arith(text, i + (3 if c == "$" else 2))
                buf.append("$")
            elif text.startswith("$(", i):
                k = _close(text, i + 2, "(", ")")
                self.scan(text[i + 2:k - 1])
                buf.append("$")
                i = k
            elif text.startswith("${", i):
                i = _close(text, i + 2, "{", "}")
                buf.append("$")
            elif c == "`":
                k = text.find("`", i + 1)
                self.scan(text[i + 1:k])
                buf.append("$")
                i = k + 1
            elif at_word and text.startswith("[[", i):
                k = _close(text, i + 2, "[[", "]]")
                for sub in re.findall(r"\$\(([^()]*)\)", text[i:k]):
                    self.scan(sub)
                buf.append("[")
                i = k
            elif c == "(" and re.search(r"(?:^|\s)([A-Za-z_]\w*)\+?=$", "".join(buf)):
                k = _close(text, i + 1, "(", ")")
                name = re.search(r"([A-Za-z_]\w*)\+?=$", "".join(buf)).group(1)
                first = text[i + 1:k - 1].split()
                self.arrays.setdefault(name, first[0] if first else "")
                buf.append("$")
                i = k
            elif c == "&" and (text[i - 1:i] in "<>" or text[i + 1:i + 2] == ">"):
                buf.append(c)  # a redirection (>&2, 2>&1, &>), not a separator
                i += 1
            elif c in ";|&(){}\n":
                flush()
                i += 1
            else:
                buf.append(c)
                i += 1
        flush()

    def _arith(self, text: str, i: int) -> int:
        k = _close(text, i, "((", "))")
        for sub in re.findall(r"\$\(([^()]*)\)", text[i:k]):
            self.scan(sub)
        return k


def _strip_heredocs(text: str) -> str:
    out, end = [], None
    for line in text.splitlines():
        if end is not None:
            end = None if line.strip() == end else end
            continue
        m = re.search(r"<<-?\s*['\"]?(\w+)['\"]?", line)
        end = m.group(1) if m else None
        out.append(line)
    return "\n".join(out)


def _command_words(segment: str, arrays: dict[str, str], wrappers: dict[str, int]) -> list[str]:
    """The programs one simple command runs: its first word, and the next after a wrapper (sudo, timeout...)."""
    try:
        words = shlex.split(segment)
    except ValueError:
        words = segment.split()
    out, i = [], 0
    while i < len(words):
        w = words[i]
        if w in ("for", "select", "case"):
            return out  # a loop variable and its list, or the word a case matches: no command
        if re.match(r"^[A-Za-z_]\w*\+?=", w) or re.match(r"^\d*[<>]", w) or w in KEYWORDS:
            i += 1
            continue
        array = re.fullmatch(r"\$\{?(\w+)\[@\]\}?", w)
        if "$" in w and not (array and arrays.get(array.group(1))):
            return out  # "$VENV/bin/python", "$@": this repository's or the caller's, not a system program
        if array:
            w = arrays[array.group(1)]
        if w in ("command", "type", "hash") and i + 1 < len(words) and words[i + 1].startswith("-"):
            return out  # `command -v x` looks a program up, it does not run it
        name = Path(w).name
        if w.startswith("-") or not PROGRAM.match(name):
            return out
        out.append(name)
        if name == "chroot":
            return out  # what follows runs inside another root file system
        if name not in WRAPPERS and name not in wrappers:
            return out
        i += 1 + wrappers.get(name, 0)
        while i < len(words) and (words[i].startswith("-") or re.match(r"^[A-Za-z_]\w*=", words[i])
                                  or re.fullmatch(r"[\d.]+[smhd]?", words[i]) or words[i] == "{}"):
            i += 2 if words[i] in TAKES_VALUE else 1
    return out


def shell_programs(paths: list[Path]) -> dict[str, set[str]]:
    """{program: {script, ...}} of shell scripts read together (one sources another's functions).
    A program the script first looks up with `command -v` is optional there and left out."""
    texts = {p: p.read_text() for p in paths}
    functions: set[str] = set()
    wrappers: dict[str, int] = {}  # a function that runs its arguments: how many it shifts off first
    for text in texts.values():
        for m in re.finditer(r"(?m)^\s*(?:function\s+)?([A-Za-z_][\w-]*)\s*\(\)\s*\{", text):
            functions.add(m.group(1))
            body = re.sub(r"'[^']*'", "''", text[m.end():_close(text, m.end(), "{", "}")])
            if re.search(r'(?:^|[;&|{]|\bthen|\bdo|\belse)\s*"?\$@"?(?:\s|;|$)', body):
                wrappers[m.group(1)] = sum(int(n or 1) for n in re.findall(r"\bshift\b[ \t]*(\d*)", body))
    found: dict[str, set[str]] = {}
    for path, text in texts.items():
        scan = ShellScan()
        scan.scan(text)
        looked_up = set(re.findall(r"command\s+-v\s+([\w.+-]+)", text))
        for seg in scan.segments:
            for word in _command_words(seg, scan.arrays, wrappers):
                if word not in BUILTINS | KEYWORDS | functions | looked_up:
                    found.setdefault(word, set()).add(str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path))
    return found
