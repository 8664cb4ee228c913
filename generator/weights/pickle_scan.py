"""A static scan of a checkpoint's pickle, done before torch's own unpickler reads it.

torch's ``weights_only`` unpickler builds only tensors, plain containers and classes it is
told are safe, but a crafted file can still make it (or the code after it) spend unbounded
memory or time with objects it does allow: ``bytearray(2**32)``, a quadratic codec through
``_codecs.encode``, a dict key of nested shared tuples whose hash takes 2**60 steps, a
storage that claims more bytes than the file holds, an error message that formats a huge
shared structure. This module walks the opcodes without building anything (a symbolic stack
of small records, linear in the pickle's length) and refuses such files with one sentence. It
also reports which foreign globals the pickle names and how their objects are used (called,
filled with items, given attribute state), so the loader can map each to an inert stub of the
right shape.

Only the opcodes torch's unpickler implements are accepted (what ``torch.save`` writes).
"""

from __future__ import annotations

import _compat_pickle
import io
import pickletools
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from generator.errors import CheckpointError

# The opcodes torch's weights_only unpickler implements; anything else cannot be a checkpoint.
SUPPORTED = frozenset({
    "APPEND", "APPENDS", "BINFLOAT", "BINGET", "BININT", "BININT1", "BININT2", "BINPERSID", "BINPUT",
    "BINUNICODE", "BUILD", "EMPTY_DICT", "EMPTY_LIST", "EMPTY_SET", "EMPTY_TUPLE", "GLOBAL", "LONG1",
    "LONG_BINGET", "LONG_BINPUT", "MARK", "NEWFALSE", "NEWOBJ", "NEWTRUE", "NONE", "PROTO", "REDUCE", "SETITEM",
    "SETITEMS", "SHORT_BINSTRING", "STOP", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3",
})
MAX_DEPTH = 200  # containers inside containers; checkpoints nest about ten deep
MAX_KEY_SIZE = 10_000  # objects in a hashed key (tuples of tuples ... expanded)
NODE_BYTES = 64  # what one small Python object costs, for the memory estimate
SAFE_ENCODINGS = frozenset({"latin1", "latin-1", "iso8859-1", "iso-8859-1", "utf-8", "utf8", "ascii"})
_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_ELEMENT_BYTES = {
    "ByteStorage": 1, "CharStorage": 1, "BoolStorage": 1, "ShortStorage": 2, "HalfStorage": 2,
    "BFloat16Storage": 2, "IntStorage": 4, "FloatStorage": 4, "LongStorage": 8, "DoubleStorage": 8,
    "ComplexFloatStorage": 8, "ComplexDoubleStorage": 16, "UntypedStorage": 1,
}


def shown(text: str, limit: int = 60) -> str:
    """File-supplied text for a message: escaped (no newlines or control characters) and cut short."""
    escaped = text.encode("unicode_escape", "backslashreplace").decode("ascii")
    return escaped if len(escaped) <= limit else escaped[: limit - 3] + "..."


@dataclass(eq=False)
class _Node:
    """What the scan knows of one object on the stack: its kind, a literal, its parts."""

    kind: str  # literal kinds (str, bytes, int, float, bool, none), tuple, list, dict, set,
    #           global, result (of a call or NEWOBJ), storage, mark
    value: Any = None  # a literal (str and bytes cut short), or (module, name) of a global
    children: list[_Node] = field(default_factory=list)
    origin: tuple[str, str] | None = None  # for results: the global whose object this is
    size: int = 1  # objects in this tuple, shared parts counted each time (capped)


@dataclass
class GlobalUse:
    """How the objects of one foreign global are used in the pickle."""

    called: bool = False  # REDUCE or NEWOBJ on it
    items: bool = False  # its objects receive SETITEM(S)
    appended: bool = False  # its objects receive APPEND(S)
    built: bool = False  # its objects receive BUILD (attribute state)


@dataclass
class ScanResult:
    """What a pickle names and claims.

    Attributes:
        globals: every global the pickle names, with how its objects are used.
        storage_bytes: bytes the storages it refers to claim to hold, by storage key.
        estimated_bytes: a generous estimate of the memory its objects take.
        end: the offset just after its STOP.
    """

    globals: dict[tuple[str, str], GlobalUse] = field(default_factory=dict)
    storage_bytes: dict[str, int] = field(default_factory=dict)
    estimated_bytes: int = 0
    end: int = 0


class ScanError(CheckpointError):
    """The pickle was refused by the scan (the message says why)."""


def scan_pickle(stream: io.BufferedIOBase, source: str, *, budget: int,
                check_global: Callable[[str, str, bool], None]) -> ScanResult:
    """Scan one pickle from ``stream`` (stopping after its STOP) without building anything.

    Args:
        source: the file name, for messages.
        budget: the most memory its objects may take (estimated); refused beyond.
        check_global: ``check_global(module, name, called)`` raises for a global that must
            not appear (or not be called); the scan calls it for each use.
            (``called`` is True for REDUCE and NEWOBJ.)

    Raises:
        ScanError: not a pickle torch could read, or one that would take more memory, time or
            nesting than a checkpoint can need.
        UnsafeCheckpointError: from ``check_global``.
    """
    start = stream.tell()
    result = ScanResult()
    scanner = _Scanner(source, budget, check_global, result)
    try:
        for opcode, arg, _ in pickletools.genops(stream):
            scanner.step(opcode.name, arg)
            if opcode.name == "STOP":
                break
        else:
            raise scanner.refuse("ends before the pickle does (truncated)")
    except (ValueError, struct.error, EOFError, UnicodeDecodeError, IndexError) as error:
        raise ScanError(f"{source} is truncated or corrupt ({shown(str(error))}); download it again.") from None
    result.end = stream.tell()
    if result.end <= start:
        raise scanner.refuse("holds no pickle")
    scanner.check_depth()
    return result


class _Scanner:
    def __init__(self, source: str, budget: int, check_global: Callable[[str, str, bool], None],
                 result: ScanResult):
        self.source, self.budget, self.check_global, self.result = source, budget, check_global, result
        self.stack: list[_Node] = []
        self.marks: list[list[_Node]] = []
        self.memo: dict[int, _Node] = {}
        self.nodes: list[_Node] = []

    def refuse(self, why: str) -> ScanError:
        return ScanError(f"{self.source} {why}, which no checkpoint needs, so it was not loaded; "
                         "use a checkpoint from the model's official source.")

    def push(self, node: _Node, cost: int = NODE_BYTES) -> None:
        self.result.estimated_bytes += cost
        if self.result.estimated_bytes > self.budget:
            raise self.refuse("would take more memory to read than its size can justify")
        self.nodes.append(node)
        self.stack.append(node)

    def pop(self) -> _Node:
        if not self.stack:
            raise self.refuse("is a malformed pickle (its stack runs empty)")
        return self.stack.pop()

    def pop_mark(self) -> list[_Node]:
        if not self.marks:
            raise self.refuse("is a malformed pickle (an unmatched mark)")
        items, self.stack = self.stack, self.marks.pop()
        return items

    def use(self, node: _Node) -> GlobalUse | None:
        """The use record of the global whose object ``node`` is, if it is one."""
        return self.result.globals.get(node.origin) if node.kind == "result" and node.origin else None

    def step(self, name: str, arg: Any) -> None:
        if name not in SUPPORTED:
            raise self.refuse(f"uses the pickle instruction {name}")
        handler = getattr(self, f"op_{name.lower()}", None)
        if handler is not None:
            handler(arg)
        elif name in ("BININT", "BININT1", "BININT2", "LONG1"):
            self.push(_Node("int", arg))
        elif name == "BINFLOAT":
            self.push(_Node("float", arg))
        elif name in ("NEWTRUE", "NEWFALSE"):
            self.push(_Node("bool", name == "NEWTRUE"))
        elif name == "NONE":
            self.push(_Node("none"))
        elif name in ("BINUNICODE", "SHORT_BINSTRING"):
            text = arg if isinstance(arg, str) else bytes(arg)
            self.push(_Node("str" if isinstance(text, str) else "bytes", text[:256]), NODE_BYTES + len(text))
        elif name in ("EMPTY_LIST", "EMPTY_DICT", "EMPTY_SET"):
            self.push(_Node(name.removeprefix("EMPTY_").lower()))
        elif name == "EMPTY_TUPLE":
            self.push(_Node("tuple"))
        elif name in ("PROTO", "STOP"):
            if name == "STOP":
                self.pop()
        else:  # pragma: no cover - every supported opcode is handled above
            raise AssertionError(name)

    # --- memo and marks -------------------------------------------------------------------

    def op_mark(self, _: Any) -> None:
        self.marks.append(self.stack)
        self.stack = []

    def op_binput(self, index: int) -> None:
        if not self.stack:
            raise self.refuse("is a malformed pickle (it memoizes nothing)")
        self.memo[index] = self.stack[-1]

    op_long_binput = op_binput

    def op_binget(self, index: int) -> None:
        if index not in self.memo:
            raise self.refuse("is a malformed pickle (it refers to an object it never stored)")
        self.stack.append(self.memo[index])

    op_long_binget = op_binget

    # --- containers -----------------------------------------------------------------------

    def _tuple(self, items: list[_Node]) -> None:
        size = 1 + sum(item.size for item in items)
        self.push(_Node("tuple", children=items, size=min(size, MAX_KEY_SIZE + 1)), NODE_BYTES + 8 * len(items))

    def op_tuple(self, _: Any) -> None:
        self._tuple(self.pop_mark())

    def op_tuple1(self, _: Any) -> None:
        self._tuple([self.pop()])

    def op_tuple2(self, _: Any) -> None:
        second, first = self.pop(), self.pop()
        self._tuple([first, second])

    def op_tuple3(self, _: Any) -> None:
        third, second, first = self.pop(), self.pop(), self.pop()
        self._tuple([first, second, third])

    def _fill(self, target: _Node, items: list[_Node], *, mapping: bool) -> None:
        use = self.use(target)
        if use is not None:
            use.items, use.appended = use.items or mapping, use.appended or not mapping
        elif target.kind != ("dict" if mapping else "list"):
            what = "items to" if mapping else "elements to"
            raise self.refuse(f"adds {what} a {target.kind}, not a {'mapping' if mapping else 'list'}")
        if mapping:
            for key in items[::2]:
                self._check_key(key)
        target.children.extend(items)
        self.result.estimated_bytes += 48 * len(items)
        if self.result.estimated_bytes > self.budget:
            raise self.refuse("would take more memory to read than its size can justify")

    def _check_key(self, key: _Node) -> None:
        if key.kind == "tuple" and key.size > MAX_KEY_SIZE:
            raise self.refuse("uses a mapping key so nested that hashing it would take practically forever")

    def op_append(self, _: Any) -> None:
        item = self.pop()
        self._fill(self._top(), [item], mapping=False)

    def op_appends(self, _: Any) -> None:
        items = self.pop_mark()
        self._fill(self._top(), items, mapping=False)

    def op_setitem(self, _: Any) -> None:
        value, key = self.pop(), self.pop()
        self._fill(self._top(), [key, value], mapping=True)

    def op_setitems(self, _: Any) -> None:
        items = self.pop_mark()
        if len(items) % 2:
            raise self.refuse("is a malformed pickle (a mapping with a key but no value)")
        self._fill(self._top(), items, mapping=True)

    def _top(self) -> _Node:
        if not self.stack:
            raise self.refuse("is a malformed pickle (its stack runs empty)")
        return self.stack[-1]

    # --- globals, calls, state ------------------------------------------------------------

    def op_global(self, arg: str) -> None:
        module, _, name = arg.partition(" ")
        # Python 2 names, mapped as torch's unpickler maps them
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if not (_DOTTED.fullmatch(module) and _DOTTED.fullmatch(name)):
            raise self.refuse(f"names a global that is not a Python name ({shown(arg)})")
        self.check_global(module, name, False)
        self.result.globals.setdefault((module, name), GlobalUse())
        self.push(_Node("global", (module, name)))

    def _callable(self, node: _Node, how: str) -> tuple[str, str]:
        if node.kind != "global":
            raise self.refuse(f"{how} something that is not a class or function")
        module, name = node.value
        self.check_global(module, name, True)
        self.result.globals[node.value].called = True
        return node.value

    def op_reduce(self, _: Any) -> None:
        args = self.pop()
        target = self._callable(self.pop(), "calls")
        if args.kind != "tuple":
            raise self.refuse("calls a function with arguments that are not a tuple")
        origin = target
        if target == ("_codecs", "encode"):
            self._check_encode(args)
        elif target == ("builtins", "bytearray"):
            if not args.children or args.children[0].kind not in ("str", "bytes", "result"):
                raise self.refuse("asks for a bytearray of a given size")
        elif target == ("copyreg", "_reconstructor"):
            if not args.children or args.children[0].kind != "global":
                raise self.refuse("reconstructs an object of something that is not a class")
            origin = args.children[0].value
            self.check_global(*origin, True)
            self.result.globals[origin].called = True
        self.push(_Node("result", children=[args], origin=origin))

    def _check_encode(self, args: _Node) -> None:
        parts = args.children
        if len(parts) != 2 or parts[0].kind != "str" or parts[1].kind != "str":
            raise self.refuse("encodes text with arguments a checkpoint never uses")
        encoding = str(parts[1].value).lower().replace("_", "-")
        if encoding not in SAFE_ENCODINGS:
            raise self.refuse(f"encodes text with the codec {shown(str(parts[1].value))}")

    def op_newobj(self, _: Any) -> None:
        args = self.pop()
        target = self._callable(self.pop(), "creates an object of")
        if args.kind != "tuple":
            raise self.refuse("creates an object with arguments that are not a tuple")
        self.push(_Node("result", children=[args], origin=target))

    def op_build(self, _: Any) -> None:
        state = self.pop()
        target = self._top()
        use = self.use(target)
        if use is None:
            if target.kind == "global":
                raise self.refuse("sets attributes on a class itself")
            if target.kind != "result":
                raise self.refuse(f"sets attributes on a {target.kind}")
        else:
            use.built = True
        target.children.append(state)

    def op_binpersid(self, _: Any) -> None:
        pid = self.pop()
        parts = pid.children
        if pid.kind == "tuple" and len(parts) >= 5 and parts[0].kind == "str" and parts[0].value == "storage":
            kind, key, numel = parts[1], parts[2], parts[4]
            if kind.kind != "global" or key.kind != "str" or numel.kind != "int" or numel.value < 0:
                raise self.refuse("refers to a tensor storage in a way torch never writes")
            element = _ELEMENT_BYTES.get(kind.value[1], 8)
            claimed = int(numel.value) * element
            previous = self.result.storage_bytes.get(key.value, 0)
            self.result.storage_bytes[key.value] = max(previous, claimed)
        elif pid.kind != "int":
            raise self.refuse("refers to external data other than tensor storages")
        self.push(_Node("storage", children=[pid]))

    # --- after the scan -------------------------------------------------------------------

    def check_depth(self) -> None:
        """Refuse containers nested deeper than :data:`MAX_DEPTH` (iterative, cycles ignored)."""
        depth: dict[int, int] = {}
        state: dict[int, int] = {}
        for root in self.nodes:
            if id(root) in state:
                continue
            work = [(root, iter(root.children))]
            state[id(root)] = 1
            while work:
                node, children = work[-1]
                child = next(children, None)
                if child is None:
                    work.pop()
                    state[id(node)] = 2
                    depth[id(node)] = 1 + max((depth.get(id(c), 0) for c in node.children), default=0)
                    if depth[id(node)] > MAX_DEPTH:
                        raise self.refuse(f"nests objects more than {MAX_DEPTH} deep")
                elif id(child) not in state:
                    state[id(child)] = 1
                    work.append((child, iter(child.children)))
