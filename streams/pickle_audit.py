"""Which classes and functions a pickle would import, read WITHOUT unpickling it.

``churnpulse security sign-state`` signs state written before signing existed; it first lists
every global the pickle names (``GLOBAL``/``STACK_GLOBAL``/``INST`` opcodes, via
:mod:`pickletools`) and refuses to sign one that names anything outside the modules our state
is made of (a pickle whose ``__reduce__`` calls ``os.system`` names ``posix.system``).

>>> import pickle, collections
>>> suspicious_globals(pickle.dumps(collections.OrderedDict(a=1)))
[]
>>> import os
>>> class Evil:
...     def __reduce__(self):
...         return (os.system, ("true",))
>>> suspicious_globals(pickle.dumps(Evil()))
['posix.system']
"""

from __future__ import annotations

import pickletools

ALLOWED_MODULES = ("river", "online_models", "streams", "alerts", "collections", "copyreg",
                   "numpy", "datetime", "_codecs", "math", "random", "decimal", "fractions",
                   "array", "enum", "uuid", "scipy", "pandas", "sortedcontainers")
ALLOWED_BUILTINS = frozenset({"set", "frozenset", "dict", "list", "tuple", "float", "int",
                              "complex", "bytearray", "bytes", "slice", "range", "object",
                              "bool", "str"})
ALLOWED_NAMES = frozenset({"functools.partial"})  # River's defaultdict factories


def globals_of(data: bytes) -> list[str]:
    """``module.name`` of every global the pickle imports, in order (no code runs)."""
    found: list[str] = []
    recent: list[object] = []  # values pushed by string and memo-get opcodes (None: other)
    memo: dict[int, object] = {}
    for op, arg, _pos in pickletools.genops(data):
        name = op.name
        if name in ("GLOBAL", "INST"):
            module, _, attr = str(arg).partition(" ")
            found.append(f"{module}.{attr}")
            recent.append(None)
        elif name == "STACK_GLOBAL":
            pair = (recent[-2], recent[-1]) if len(recent) >= 2 else (None, None)
            found.append(f"{pair[0]}.{pair[1]}" if all(isinstance(x, str) for x in pair)
                         else "?.?")
            recent.append(None)
        elif name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE",
                      "SHORT_BINSTRING", "BINSTRING", "STRING"):
            recent.append(arg)
        elif name == "MEMOIZE":
            memo[len(memo)] = recent[-1] if recent else None
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[int(arg)] = recent[-1] if recent else None  # type: ignore[arg-type]
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            recent.append(memo.get(int(arg)))  # type: ignore[arg-type]
        elif op.stack_after:
            recent.append(None)
    return found


def _allowed(qualname: str) -> bool:
    module, _, attr = qualname.rpartition(".")
    if qualname in ALLOWED_NAMES:
        return True
    if module == "builtins":
        return attr in ALLOWED_BUILTINS
    return any(module == m or module.startswith(m + ".") for m in ALLOWED_MODULES)


def suspicious_globals(data: bytes) -> list[str]:
    """The globals outside :data:`ALLOWED_MODULES` (empty: the pickle looks like our state)."""
    return sorted({g for g in globals_of(data) if not _allowed(g)})
