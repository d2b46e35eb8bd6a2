"""Validating a submission's objects and its copies on a second core while the writer goes on.

A submission's objects are validated before they are accepted, and every copy the sanitizer makes before it
may be released (fail closed). In a large envelope the two are about a quarter of what the process holding
the write lock spends per object (docs/benchmarks.md, "The eleventh round"), and the machine's second core sits
idle meanwhile: a client sends an envelope and waits. :class:`CheckProcess` is one child process holding its
own :class:`~cutout.model.validate.Validator`. A submission hands it its objects before its transaction
starts and its copies in chunks as they are made (:class:`DeferredChecks`, given to the sanitizer in the
validator's place), and asks for the verdicts only before it commits.

For a provider's envelope the child also makes the copies ahead (:class:`Ahead`), part by part, and the writer
takes them as it releases. Where a copy it needs is not there yet, the writer does not wait: it makes the
copies of the envelope's last object the child has not reached itself, and tells the child so through a page
of memory they share (:class:`_Mark`), until the one it needs has come; it judges the objects it took itself.
So when the child is the slower of the two (a slower core, or a busier one) the two still end together.

The verdicts decide nothing by themselves: if any object or copy is invalid, or the child does not answer, the
caller rolls the whole transaction back and does it again validating in process, as it always did. So what
is committed, and how a refusal is worded, is exactly what validating in line gives; the child only makes the
common case (everything valid) cheaper. Its replies are the positions of invalid objects, never messages: the
run done again in process finds and words them.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import logging
import mmap
import os
import select
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson

if TYPE_CHECKING:
    from cutout.sanitize.engine import Checks, Prebuilt, Sanitizer, Template
    from cutout.sanitize.recipe import Recipe

__all__ = ["CHUNK", "Ahead", "CheckProcess", "DeferredChecks", "Invalid"]

log = logging.getLogger(__name__)

#: copies sent to the child at a time: large enough that a send is cheap per copy, small enough that the
#: child starts on the first ones while the writer is still making the rest
CHUNK = 16
#: how long the writer waits for the last verdicts before it gives up on the child (and validates in process):
#: the child needs well under a millisecond for a chunk, and the writer holds the write lock meanwhile
REPLY_TIMEOUT = 5.0
#: how long the child may take to start (it imports and compiles the schemas)
START_TIMEOUT = 30.0

#: the size the parent asks for the child's stdin pipe (Linux's largest for an unprivileged process; the
#: default is 64 KiB): an envelope's objects fit in it at once, and the writer goes on
PIPE_BYTES = 1 << 20

_READY = b"ready"

#: the child's command line after the interpreter: this module, run as a script
CHILD: tuple[str, ...] = ("-m", "cutout.model.offload")

#: the environment variable that gives the child the descriptor of the :class:`_Mark` it shares with the parent
MARK_FD = "CUTOUT_CHECK_MARK_FD"


class _Mark:
    """Two numbers both processes see at once, in a page of memory they share, about the envelope in progress:
    where the writer's part of it begins (:meth:`get`, :meth:`set`; see :meth:`DeferredChecks._take`), and
    the position of the object the child is making copies of (:meth:`front`). Each is written by one process
    only. The writer only ever lowers its number within an envelope, and the child reads it before each object:
    a value read late only makes the child do what the writer took as well (the same copy, made twice), never
    leave anything undone.

    Each number is one aligned 8-byte word, read and written whole through a ``memoryview`` of signed 64-bit
    items: CPython copies such an item with one 8-byte ``memcpy``, a single load or store on x86-64 and ARMv8,
    so the other process sees the old value or the new one, never a mix. (``struct.pack_into`` is not: it
    clears the field before it writes the bytes, and the child then read a mark of 0 now and then, answered
    "the writer took it" for an object the writer had not taken, and the writer made that copy in line.)"""

    def __init__(self, memory: mmap.mmap) -> None:
        self._memory = memory
        self._words = memoryview(memory).cast("q")

    @classmethod
    def new(cls) -> tuple[_Mark, int] | None:
        """A mark and the descriptor to hand the child (the caller closes it once the child has it); None
        where shared memory cannot be had (the child then takes every object it is given)."""
        try:
            fd = os.memfd_create("cutout-check-mark") if hasattr(os, "memfd_create") else _temporary_fd()
        except OSError:
            return None
        try:
            os.ftruncate(fd, mmap.PAGESIZE)
            return cls(mmap.mmap(fd, mmap.PAGESIZE)), fd
        except OSError:
            os.close(fd)
            return None

    @classmethod
    def inherited(cls) -> _Mark | None:
        """The child's view of the mark its parent made (None if there is none)."""
        fd = os.environ.get(MARK_FD)
        if not fd:
            return None
        try:
            return cls(mmap.mmap(int(fd), mmap.PAGESIZE))
        except (OSError, ValueError):
            return None

    def get(self) -> int:
        return int(self._words[0])

    def set(self, value: int) -> None:
        self._words[0] = value

    def front(self) -> int:
        return int(self._words[1])

    def set_front(self, value: int) -> None:
        self._words[1] = value

    def close(self) -> None:
        self._words.release()  # the mapping cannot close while a view of it is held
        self._memory.close()


def _temporary_fd() -> int:
    import tempfile

    fd, path = tempfile.mkstemp(prefix="cutout-check-mark-")
    os.unlink(path)
    return fd


class _Channel:
    """Length-prefixed messages over a pair of pipes (the child's stdin and stdout).

    The parent writes without blocking (``send_later``, ``flush``): an envelope's objects are handed over at
    once, more than a pipe holds, and a blocking write would stop the writer until the child had read them.
    What the pipe does not take waits in a buffer, written a little more at each message sent and whenever
    the parent waits for a reply (:meth:`wait` tells it when there is room). (A thread that wrote them
    instead cost the server's memory: its peak grew by 20 MB more over the benchmark's 100,000 objects.)"""

    def __init__(self, reader: int, writer: int, *, nonblocking: bool = False) -> None:
        self._reader, self._writer = reader, writer
        self._pending = bytearray()
        if nonblocking:
            os.set_blocking(writer, False)
            with contextlib.suppress(OSError):  # Linux: a larger pipe takes a whole envelope at once
                fcntl.fcntl(writer, getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_BYTES)

    def send_bytes(self, data: bytes) -> None:
        """Write a message, waiting for the pipe (the child's side)."""
        for part in (len(data).to_bytes(4, "big"), data):  # not joined: that would copy the message
            view = memoryview(part)
            while view:
                view = view[os.write(self._writer, view) :]

    def send_later(self, data: bytes) -> None:
        """Write what the pipe takes now of a message; the rest waits for :meth:`flush`."""
        self._pending += len(data).to_bytes(4, "big")
        self._pending += data
        self.flush()

    def flush(self) -> None:
        """Write what waits, as far as the pipe takes it now (:meth:`wait` says when it has room again)."""
        while self._pending:
            try:
                written = os.write(self._writer, self._pending)
            except BlockingIOError:
                return
            del self._pending[:written]

    def poll(self, timeout: float = 0.0) -> bool:
        return bool(select.select([self._reader], [], [], timeout)[0])

    def wait(self, timeout: float) -> tuple[bool, bool]:
        """Wait up to ``timeout`` until a reply can be read or, while something waits to be written, the pipe
        has room: (readable, writable). Neither side then waits on the other: a child that is writing a long
        reply is read from while the rest of an envelope waits here."""
        readable, writable, _ = select.select([self._reader], [self._writer] if self._pending else [], [], timeout)
        return bool(readable), bool(writable)

    def recv_bytes(self) -> bytes:
        size = int.from_bytes(self._read(4), "big")
        return self._read(size)

    def _read(self, n: int) -> bytes:
        parts: list[bytes] = []
        while n:
            part = os.read(self._reader, min(n, 1 << 20))
            if not part:
                raise EOFError("the other end closed the pipe")
            parts.append(part)
            n -= len(part)
        return b"".join(parts)


def _serve() -> None:
    """The child (``python -m cutout.model.offload``): validate each chunk of objects that arrives on stdin,
    answer on stdout with the positions of the invalid ones; end when stdin ends."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C meant for the server: it ends when the server does
    answers = os.dup(sys.stdout.fileno())
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # whatever else prints goes to stderr, not into answers
    from cutout.model.validate import Validator

    validator = Validator(lazy=True)  # the types it is given: most envelopes hold a few
    import cutout.sanitize.recipe  # noqa: F401  (what makes copies ahead: loaded now, not with the first envelope)

    # what is loaded now lives as long as the child: the cyclic collector need not walk it at every full
    # collection (an envelope keeps its objects until their verdicts, and a full collection then walked the
    # schemas too: parsing a part cost 18 µs per object instead of 3)
    gc.collect()
    gc.freeze()
    with contextlib.suppress(OSError):  # copies made ahead are long replies: the writer reads them when it can
        fcntl.fcntl(answers, getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_BYTES)
    channel = _Channel(sys.stdin.fileno(), answers)
    try:
        channel.send_bytes(_READY)
    except OSError:
        return  # the parent gave up waiting, or ended, while this one started
    mark = _Mark.inherited()
    ahead: _Ahead | None = None
    while True:
        try:
            data = channel.recv_bytes()
        except (EOFError, OSError):
            return  # the parent closed its end or died
        message = orjson.loads(data)
        reply: bytes
        if isinstance(message, list):  # objects to validate
            reply = orjson.dumps([i for i, obj in enumerate(message) if validator.check(obj)])
        elif "recipes" in message:  # an envelope to come, whose copies are to be made ahead: no answer
            ahead = _Ahead(message, validator, mark)
            continue
        elif "part" in message:
            reply = ahead.make(message["part"]) if ahead is not None else _none_made(message["part"])
        else:  # "end": the envelope's own objects are judged (those the writer did not take)
            reply = ahead.verdicts() if ahead is not None else orjson.dumps([])
            ahead = None
        try:
            channel.send_bytes(reply)
        except OSError:
            return  # the parent stopped listening (it gave this child up)


class _Ahead:
    """The child's part in one envelope whose copies it makes ahead (:meth:`DeferredChecks.check_many`): the
    shared copy of each object under each recipe, then the verdicts on the objects themselves."""

    def __init__(self, plan: Mapping[str, Any], validator: Any, mark: _Mark | None = None) -> None:
        from cutout.model.tlp import object_tlp
        from cutout.sanitize.recipe import Recipe

        self._tlp = object_tlp
        self._validator = validator
        self._sanitizers = [Recipe.from_json(r).sanitizer(validator) for r in plan["recipes"]]
        self._stamp = int(plan["stamp"])
        self._unmarked = int(plan["unmarked"])
        self._objects: list[Any] = []
        self._mark = mark

    def make(self, part: Sequence[Any]) -> bytes:
        """``{"made": [[position, tlp, [shared copy or null, per recipe]], ...]}`` for one part."""
        made: list[Any] = []
        for pos, obj in part:
            self._objects.append(obj)
            if self._mark is not None:
                if pos >= self._mark.get():
                    made.append([pos, None, None])  # the writer took it (and those after it)
                    continue
                self._mark.set_front(pos)
            try:
                tlp = self._tlp(obj, self._unmarked)
                made.append([pos, tlp, [s.shared_copy(obj, self._stamp, self._stamp, tlp) for s in self._sanitizers]])
            except Exception:  # not valid STIX, most likely: the verdicts will say; the writer makes its copy
                made.append([pos, None, None])
        try:
            return orjson.dumps({"made": made})
        except (TypeError, ValueError):
            return _none_made(part)

    def verdicts(self) -> bytes:
        """``{"verdicts": [positions of invalid objects], "judged": n}``: the first ``n`` objects were judged
        here, the writer judges the rest (those it took, :class:`_Mark`)."""
        judged = len(self._objects) if self._mark is None else max(0, min(len(self._objects), self._mark.get()))
        invalid = [i for i, obj in enumerate(self._objects[:judged]) if self._validator.check(obj)]
        return orjson.dumps({"verdicts": invalid, "judged": judged})


def _none_made(part: Sequence[Any]) -> bytes:
    """A reply that makes nothing ahead for a part (the writer makes those copies itself)."""
    return orjson.dumps({"made": [[item[0], None, None] for item in part]})


class Ahead(NamedTuple):
    """What the child needs to make an envelope's copies ahead (:meth:`DeferredChecks.check_many`): the
    recipes the writer expects to release under, and the created / modified and unmarked TLP level it
    expects to give them."""

    recipes: Sequence[Recipe]
    #: the copies' created and modified (the release's ``floor_us(now, release_granularity)``)
    stamp: int
    #: ``Settings.unmarked_level``
    unmarked: int


class Invalid(Exception):
    """A verdict named an invalid object (or the child failed): the run must be done again in process."""


class DeferredChecks:
    """The child's part in one submission: ``check_many`` records its objects and ``check``, given to the
    sanitizer as its validator, each copy (sent in chunks), saying nothing is wrong; :meth:`all_valid` says,
    before the commit, whether the child found every one of them valid."""

    def __init__(self, owner: CheckProcess, conn: _Channel, mark: _Mark | None = None) -> None:
        self._owner = owner
        self._conn = conn
        self._mark = mark
        self._chunk: list[Mapping[str, Any]] = []
        self._sent = 0  # chunks sent whose verdicts are not read yet
        self._invalid = False  # a verdict named an invalid copy (the rest need not be sent)
        self._broken = False  # the child failed: no verdict of this run counts
        self._done = False
        self.checked = 0  # objects recorded
        # copies made ahead (check_many with an Ahead): the envelope's objects (kept, so their ids stay theirs),
        # their positions by id(), the recipes, and what came back by position: (tlp, [copy per recipe])
        self._objects: Sequence[object] = ()
        self._positions: dict[int, int] = {}
        self._ahead: Ahead | None = None
        self._made: dict[int, tuple[Any, Any]] = {}
        # the writer's part (check_many with an Ahead and a validator of its own): the positions from _back on,
        # whose copies it made itself rather than wait (_take), validated by _local with sanitizers of its own,
        # and whose objects it judges itself from _judged_from on
        self._local: Checks | None = None
        self._back = 0
        self._own: dict[int, tuple[Any, Any]] = {}
        self._own_sanitizers: dict[int, Sanitizer] = {}
        self._judged_from = 0
        #: :meth:`require_valid` passed: the caller goes on to commit, and an error after it is the commit's own
        self.verified = False

    def check(self, obj: object) -> list[str]:
        """Record a copy for the child; nothing is reported now (see :meth:`all_valid`). Raises
        :class:`Invalid` once a verdict already read names an invalid object: the run is to be done in process,
        so the rest of it would be wasted."""
        if self._invalid or self._broken:
            raise Invalid
        if not isinstance(obj, dict):
            self._invalid = True  # the sanitizer only makes objects; anything else is validated in process
            return []
        self._chunk.append(obj)
        self.checked += 1
        if len(self._chunk) >= CHUNK:
            self._send()
        return []

    def check_many(self, objects: Sequence[object], ahead: Ahead | None = None, local: Checks | None = None) -> None:
        """Record a submission's own objects, before its transaction starts: the child validates them while the
        writer works (their verdicts count in :meth:`all_valid` as the copies' do).

        With ``ahead``, the child first makes each object's shared copy (``Sanitizer.shared_copy``) under each
        of its recipes, which :meth:`prebuilt` then hands to the writer's sanitizer, and judges the objects
        after (their verdicts are needed only before the commit, the copies as soon as the writer releases).
        With ``local`` too (the writer's own validator), a writer that would wait for a copy takes the last
        objects the child has not reached instead (:meth:`_take`), and judges those itself."""
        if ahead is None or not ahead.recipes:
            for obj in objects:
                self.check(obj)
            self._send()  # now, not with the first copies
            return
        self._objects, self._ahead = objects, ahead
        self._positions = {id(obj): i for i, obj in enumerate(objects)}
        self.checked += len(objects)
        self._back = self._judged_from = len(objects)
        if self._mark is not None:
            self._mark.set(len(objects))  # before the plan (the child reads it only after): all of it, so far
            self._mark.set_front(0)
            self._local = local
        plan = {"recipes": [r.to_json() for r in ahead.recipes], "stamp": ahead.stamp, "unmarked": ahead.unmarked}
        self._post(orjson.dumps(plan))
        for start in range(0, len(objects), CHUNK):
            self._post(orjson.dumps({"part": [[start + i, o] for i, o in enumerate(objects[start : start + CHUNK])]}))
        if self._post(b'{"end":true}'):
            self._sent += 1

    def prebuilt(self, recipe: Recipe) -> Prebuilt | None:
        """The copies the child made ahead under ``recipe`` (``Sanitizer.sanitize``'s ``prebuilt``), or None
        when it was not one of the recipes it was given. A copy is handed over only for one of the envelope's
        own objects (the same object, not an equal one), for the timestamps and TLP it was made with; for
        anything else, or once the child has failed, the sanitizer makes the copy itself."""
        ahead = self._ahead
        if ahead is None or recipe not in ahead.recipes:
            return None
        k = ahead.recipes.index(recipe)

        def made(obj: Mapping[str, Any], created_us: int, modified_us: int, tlp: int) -> Template | None:
            pos = self._positions.get(id(obj))
            if pos is None or created_us != ahead.stamp or modified_us != ahead.stamp:
                return None
            found = self._own.get(pos) if pos >= self._back else self._made_at(pos)
            if found is None or found[0] != tlp or found[1] is None:
                return None
            copy = found[1][k]
            if copy is None:
                return None
            out, redactions, refs, origin = copy
            return out, int(redactions), [(str(name), bool(many)) for name, many in refs], origin

        return made

    def _made_at(self, pos: int) -> tuple[Any, Any] | None:
        """What the child made of the object at ``pos``, reading its replies until it is there; None if the
        child failed, or a verdict already says the run is to be done in process."""
        while pos not in self._made:
            if self._invalid or self._broken or self._done:
                return None
            if pos >= self._back:
                return self._own.get(pos)  # taken below, while waiting for it
            if self._local is not None:
                if self._pump(0.0):
                    continue  # a reply came (or the rest of the envelope went): look again
                if self._can_take():
                    self._take()  # nothing yet: rather than wait, make the last copy the child has not reached
                    continue
            if not self._pump(REPLY_TIMEOUT):
                self._give_up(f"the checking process made nothing in {REPLY_TIMEOUT:.0f} s")
                return None
        return self._made[pos]

    def _can_take(self) -> bool:
        """Whether the last object the child has not been left lies beyond the part it is making now and the
        next (taking nearer would race it for the same objects, whose copies come back a part at a time)."""
        mark = self._mark
        return mark is not None and self._back - 1 >= mark.front() + 2 * CHUNK

    def _take(self) -> None:
        """Make the shared copies of the last object the child has not been left (the writer's part grows by
        one from the end; :class:`_Mark` tells the child), as the child would have made them: the same
        recipes, timestamps and TLP, validated in process."""
        ahead, local, mark = self._ahead, self._local, self._mark
        if ahead is None or local is None or mark is None:
            return
        from cutout.model.tlp import object_tlp

        self._back -= 1
        mark.set(self._back)
        obj = self._objects[self._back]
        try:
            if not isinstance(obj, Mapping):
                raise TypeError("not an object")
            tlp = object_tlp(obj, ahead.unmarked)
            copies = [
                self._own_sanitizer(ahead.recipes, k, local).shared_copy(obj, ahead.stamp, ahead.stamp, tlp)
                for k in range(len(ahead.recipes))
            ]
            self._own[self._back] = (tlp, copies)
        except Exception:  # not valid STIX, most likely: as in the child, the copy is then made in line
            self._own[self._back] = (None, None)

    def _own_sanitizer(self, recipes: Sequence[Recipe], k: int, local: Checks) -> Sanitizer:
        sanitizer = self._own_sanitizers.get(k)
        if sanitizer is None:
            sanitizer = self._own_sanitizers[k] = recipes[k].sanitizer(local)
        return sanitizer

    def _judge(self, start: int, end: int) -> None:
        """Validate the envelope's objects in ``[start, end)`` here (those the child left to the writer)."""
        if start >= end or self._invalid:
            return
        if self._local is None or any(self._local.check(obj) for obj in self._objects[start:end]):
            # invalid, or nothing here to judge them with (fail closed): the run is done again in process,
            # which words the refusal
            self._invalid = True
        self._judged_from = min(self._judged_from, start)

    def _post(self, payload: bytes) -> bool:
        """Send one message (it waits in the parent if the pipe is full); whether the child is still there."""
        if self._invalid or self._broken:
            return False
        try:
            while self._conn.poll():  # read replies already there, so neither side's pipe fills
                self._receive(self._conn.recv_bytes())
            self._conn.send_later(payload)
        except (OSError, EOFError, ValueError) as exc:
            self._give_up(f"the checking process is gone ({type(exc).__name__})")
            return False
        return True

    def _pump(self, timeout: float) -> bool:
        """Write what waits for the child and read one reply, waiting up to ``timeout`` for either; whether
        anything moved (a child that failed counts as moved: :attr:`_broken` says it)."""
        try:
            readable, writable = self._conn.wait(timeout)
            if writable:
                self._conn.flush()
            if readable:
                self._receive(self._conn.recv_bytes())
            return readable or writable
        except (OSError, EOFError, ValueError) as exc:
            self._give_up(f"the checking process is gone ({type(exc).__name__})")
            return True

    def _send(self) -> None:
        if not self._chunk or self._invalid or self._broken:
            self._chunk.clear()
            return
        # a copy is final once checked (the sanitizer adds nothing after), so it is serialised as it is now
        payload = orjson.dumps(self._chunk)
        self._chunk.clear()
        if self._post(payload):
            self._sent += 1

    def _receive(self, data: bytes) -> None:
        """One reply: the copies made ahead of a part (an object), or a verdict (a list of invalid positions)."""
        reply = orjson.loads(data)
        if isinstance(reply, dict):
            if "made" in reply:
                for pos, tlp, copies in reply["made"]:
                    self._made[pos] = (tlp, copies)
                return
            # an envelope made ahead: the child judged its first objects; the writer judges the rest
            self._judge(int(reply["judged"]), self._judged_from)
            reply = reply["verdicts"]
        self._sent -= 1
        if reply:
            self._invalid = True

    def _give_up(self, why: str) -> None:
        if not self._broken:
            log.warning("%s: the submission is validated in process", why)
        self._broken = True
        self._owner.discard(self._conn)

    def all_valid(self) -> bool:
        """Whether everything recorded was valid by the child's verdicts. False also when the child failed or
        did not answer in time: the caller must then validate in process. Ends this run's use of the child
        (every verdict is read first, so the next run finds the pipe in step)."""
        if not self._done:
            self._done = True
            try:
                self._send()
                self._judge(self._back, self._judged_from)  # what it took, while the child judges its own
                while self._sent > 0 and not self._broken:
                    if not self._pump(REPLY_TIMEOUT):
                        self._give_up(f"the checking process did not answer in {REPLY_TIMEOUT:.0f} s")
                        break
            finally:
                self._made.clear()
                self._own.clear()
                self._objects, self._positions = (), {}
                if self._sent == 0 and not self._broken:
                    self._owner.give_back(self._conn)
                else:  # verdicts still on their way (the pipe is out of step), or no child
                    self._broken = True
                    self._owner.discard(self._conn)
        return not (self._invalid or self._broken)

    def require_valid(self) -> None:
        """Raise :class:`Invalid` unless :meth:`all_valid`; otherwise mark the run ``verified``."""
        if not self.all_valid():
            raise Invalid
        self.verified = True

    def close(self) -> None:
        """End this run's use of the child if :meth:`all_valid` did not (the run raised before it)."""
        if not self._done:
            self._chunk.clear()  # nobody will read these verdicts
            self.all_valid()


class CheckProcess:
    """One child process that validates submissions and their copies (see the module's text); started with the
    server, replaced after it fails. Thread-safe: one submission uses it at a time, from before its write
    transaction until its verdicts are in, just before it commits. Another may wait for it meanwhile
    (:meth:`deferred`); one that does not, or finds it gone, validates in process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._free = threading.Condition(self._lock)  # notified when a run gives the child back, or it stops
        self._proc: subprocess.Popen[bytes] | None = None
        self._conn: _Channel | None = None
        self._in_use = False
        self._closed = False
        self._starting = False
        self._started_once = False  # start() was asked for: a child that is gone is to be replaced
        self._pending: subprocess.Popen[bytes] | None = None  # a child still starting
        self._mark: _Mark | None = None  # shared with the running child

    def start(self) -> None:
        """Start the child now and wait until it can validate (so the first large envelope does not wait)."""
        with self._lock:
            self._started_once = True
            if self._closed or self._starting or (self._proc is not None and self._proc.poll() is None):
                return
            self._starting = True
        try:
            # a new interpreter that imports only the validator (not multiprocessing's spawn, which would run
            # the parent's main script again), given the descriptor of the mark it shares with this one
            shared = _Mark.new()
            mark, fd = shared if shared is not None else (None, -1)
            try:
                proc = subprocess.Popen(
                    [sys.executable, *CHILD],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    bufsize=0,
                    close_fds=True,
                    pass_fds=(fd,) if fd >= 0 else (),
                    env={**os.environ, MARK_FD: str(fd)} if fd >= 0 else None,
                )
            finally:
                if fd >= 0:
                    os.close(fd)  # the mapping stays, and the child has its own
            assert proc.stdin is not None
            assert proc.stdout is not None
            with self._lock:
                self._pending = proc
            channel = _Channel(proc.stdout.fileno(), proc.stdin.fileno(), nonblocking=True)
            try:
                ready = channel.poll(START_TIMEOUT) and channel.recv_bytes() == _READY
            except (OSError, EOFError):
                ready = False
            with self._lock:
                if ready and not self._closed:
                    self._proc, self._conn, self._mark = proc, channel, mark
                    return
            if mark is not None:
                mark.close()
            if not ready and not self._closed:
                log.warning("the checking process did not start: copies are validated in process")
            _end(proc)
        finally:
            with self._lock:
                self._starting = False
                self._pending = None

    def start_soon(self) -> None:
        """:meth:`start` on a thread of its own: whoever asks goes on without waiting for the child."""
        if not self._closed and not self._starting:
            threading.Thread(target=self.start, name="cutout-check-start", daemon=True).start()

    def deferred(self, wait: float = 0.0) -> DeferredChecks | None:
        """The child's part in one submission, or None when it is not running, or is still in use after
        ``wait`` seconds. Waiting ends as soon as the run using it gives it back (its verdicts read, before its
        commit) or the child stops; whoever waits longest is not promised to be served first."""
        with self._lock:
            if wait > 0:
                self._free.wait_for(lambda: not self._in_use, wait)
            if self._conn is None or self._proc is None or self._proc.poll() is not None:
                gone = self._conn is not None
                if gone:
                    self._stop_locked()
                restart = gone or self._started_once
            elif self._in_use:
                return None
            else:
                self._in_use = True
                return DeferredChecks(self, self._conn, self._mark)
        if restart:
            self.start_soon()
        return None

    def give_back(self, conn: _Channel) -> None:
        with self._lock:
            if conn is self._conn:
                self._in_use = False
                self._free.notify()

    def discard(self, conn: _Channel) -> None:
        """Stop a child that failed or is out of step; the next :meth:`start` makes a new one."""
        with self._lock:
            if conn is not self._conn:
                return
            self._stop_locked()

    def _stop_locked(self) -> None:
        proc = self._proc
        self._conn = self._proc = None
        self._mark = None  # not closed: a run may still read it (it is freed with its last reference)
        self._in_use = False
        self._free.notify_all()  # whoever waits for it finds it gone
        if proc is not None:
            _end(proc)

    @property
    def running(self) -> bool:
        with self._lock:
            return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        with self._lock:
            return None if self._proc is None else int(self._proc.pid)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._stop_locked()
            pending, self._pending = self._pending, None
        if pending is not None:
            pending.kill()  # still starting: its starter sees the exchange closed and reaps it


def _end(proc: subprocess.Popen[bytes]) -> None:
    """Close the child's stdin (it reads the end and exits), wait a little, then kill it."""
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            pipe.close()
    try:
        proc.wait(2)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(2)


if __name__ == "__main__":
    _serve()
