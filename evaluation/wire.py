"""Reading what the test program (evaluation.runner) wrote, without trusting it.

The result file comes out of the sandbox, so the solution may have written anything into it. It is read with
a pickle unpickler that can reference nothing but the constructors below (the Python documentation's
"restricting globals" recipe): no class of the solution, no function of the host can be reached, so reading
it runs no foreign code. Each constructor checks its argument types, so it cannot be made to allocate more
than the frame itself holds (no `bytes(10**12)`). Sizes are capped before anything is read.

What this module deliberately does not do: compare outputs (evaluation.compare) or decide verdicts
(evaluation.execution).
"""

from __future__ import annotations

import io
import pickle
import struct


class Opaque:
    """An output that is not plain data (a function, a numpy array, an object of the solution's own class).

    It equals nothing, not even another Opaque: the host cannot run the solution's `__eq__`.
    """

    def __init__(self, type_name: str, text: str):
        self.type_name = type_name
        self.text = text

    def __eq__(self, other: object) -> bool:
        return False

    def __ne__(self, other: object) -> bool:
        return True

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return f"<{self.type_name}: {self.text}>"


class WireError(ValueError):
    """The result file is malformed (or forged)."""


def _expect(value: object, *types_: type) -> None:
    if type(value) not in types_:
        raise WireError(f"unexpected {type(value).__name__} in result frame")


def _int(value):
    _expect(value, int)
    return value


def _float(value):
    _expect(value, float)
    return value


def _complex(real, imag):
    _expect(real, float)
    _expect(imag, float)
    return complex(real, imag)


def _str(value):
    _expect(value, str)
    return value


def _bytes(value):
    _expect(value, bytes)
    return value


def _tuple(items):
    _expect(items, list)
    return tuple(items)


def _list(items):
    _expect(items, list)
    return items


def _dict(pairs):
    _expect(pairs, list)
    for pair in pairs:
        _expect(pair, tuple)
        if len(pair) != 2:
            raise WireError("malformed dict item in result frame")
    return dict(pairs)


def _set(items):
    _expect(items, list)
    return set(items)


def _frozenset(items):
    _expect(items, list)
    return frozenset(items)


def _opaque(type_name, text):
    _expect(type_name, str)
    _expect(text, str)
    return Opaque(type_name[:200], text[:200])


_CONSTRUCTORS = {
    "int": _int,
    "float": _float,
    "complex": _complex,
    "str": _str,
    "bytes": _bytes,
    "tuple": _tuple,
    "list": _list,
    "dict": _dict,
    "set": _set,
    "frozenset": _frozenset,
    "opaque": _opaque,
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if module == "autocoder_wire" and name in _CONSTRUCTORS:
            return _CONSTRUCTORS[name]
        raise WireError(f"result frame references {module}.{name}")

    def persistent_load(self, pid):
        raise WireError("result frame uses persistent ids")


def loads(data: bytes):
    """Decode one frame (or any pickle made only of plain data and the constructors above)."""
    try:
        return _SafeUnpickler(io.BytesIO(data)).load()
    except WireError:
        raise
    except Exception as exc:  # truncated data, bad opcodes, hashing an unhashable key, deep nesting
        raise WireError(f"unreadable result frame: {type(exc).__name__}: {exc}") from None


def read_frames(data: bytes) -> tuple[list[tuple], bool]:
    """Split a result file into frames; the flag says whether the file ended cleanly (no torn frame)."""
    frames: list[tuple] = []
    pos = 0
    while pos + 8 <= len(data):
        (size,) = struct.unpack_from("<Q", data, pos)
        if pos + 8 + size > len(data):
            return frames, False
        frame = loads(data[pos + 8 : pos + 8 + size])
        if type(frame) is not tuple or not frame or type(frame[0]) is not str:
            raise WireError("result frame is not a tagged tuple")
        frames.append(frame)
        pos += 8 + size
    return frames, pos == len(data)
