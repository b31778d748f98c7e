"""Record and replay: the process that decides the points never runs the student's code.

`record(qid, answer)` runs in the untrusted child (the one that unpickled the answer). The
question's grader receives a stand-in for the answer; every call into student code (the answer,
classes and objects it returns, their methods, a module's forward) goes through the stand-in,
which runs the real code, and records the call's outcome as plain data: the result (tensors
stripped of subclasses and detached, NumPy arrays, numbers, strings, nested lists, tuples and
dicts of those; a module as its parameters and buffers; anything else as a named, opaque
handle), the exception raised, what changed in the arguments, the random states and the
attributes of active torch function modes. The grader there sees only that plain data too.

`replay(qid, payload)` runs in the deciding process, on what `torch.load(weights_only=True)`
read back: the same grader runs again against a stand-in that answers each call with the
recorded data, in order. A call that differs from the recording (`Diverged`) scores 0.
"""
from __future__ import annotations

import builtins
import functools
import inspect
import io
import traceback
from typing import Any

import numpy as np
import torch
from torch import nn

from course_utils.checks import CheckResult, _student_frame, grade, load_all

from .state import PLAIN, apply_arg_changes, apply_modes, arg_changes, capture_args, modes_state, \
    plain_tensor, rng_state, set_rng_state

TAG, MAX_DEPTH = "~", 32
NO_TORCH = torch._C.DisableTorchFunction


class Diverged(BaseException):
    """The grader's calls into the student's code differ from the recording (or it is unreadable)."""


_CLASSES: dict[tuple, type] = {}


def _named_class(name: str, base: type) -> type:
    """A subclass of `base` called `name` (the student's class name, for the grader's messages)."""
    key = (str(name), base)
    if key not in _CLASSES:
        _CLASSES[key] = type(str(name), (base,), {"__module__": "student"})
    return _CLASSES[key]


class Remote:
    """An object of the student's code: attributes are recorded calls; compares by identity only."""

    def __init__(self, session: Session, handle: int, meta: dict):
        self.__dict__.update(_replay=(session, handle), _meta=meta)
        for k in ("__name__", "__qualname__", "__doc__"):
            if meta.get(k) is not None:
                self.__dict__[k] = meta[k]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        session, handle = self.__dict__["_replay"]
        return session.op(handle, "getattr", name, (), {})

    def __repr__(self) -> str:
        return self._meta["repr"]


class RemoteCallable(Remote):
    """A function, class or callable object of the student's code."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        session, handle = self.__dict__["_replay"]
        return session.op(handle, "call", "", args, kwargs)


class StandInModule(nn.Module):
    """A module of the student's code: its parameters and buffers as plain tensors, forward recorded."""

    _replay_standin = True

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        session, handle, path = self.__dict__["_replay"]
        return session.op(handle, "forward", path, args, kwargs)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name.startswith("_") or "_replay" not in self.__dict__:
                raise
        session, handle, path = self.__dict__["_replay"]
        return session.op(handle, "getattr", f"{path}.{name}" if path else name, (), {})


def signature(value: Any, depth: int = 0) -> str:
    """A short description of the grader's arguments (types, shapes, small values)."""
    if depth > 4:
        return "..."
    if isinstance(value, (Remote, StandInModule)):
        return f"<{type(value).__name__}>"
    if isinstance(value, torch.Tensor):
        return f"tensor{tuple(value.shape)}:{str(value.dtype)[6:]}"
    if type(value) in PLAIN:
        return repr(value)[:40]
    if isinstance(value, (list, tuple)):
        inner = ",".join(signature(v, depth + 1) for v in list(value)[:8])
        return f"[{inner}{',...' if len(value) > 8 else ''}]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}={signature(v, depth + 1)}" for k, v in list(value.items())[:8]) + "}"
    return type(value).__name__


def _key(handle: int, kind: str, name: str, args: tuple, kwargs: dict) -> tuple:
    return handle, kind, name, signature(tuple(args)), signature(dict(kwargs))


def _error_info(err: BaseException) -> dict:
    """What a student's exception said, as plain data (its class, builtin base, message, line)."""
    base = next(c for c in type(err).__mro__ if c.__module__ == "builtins")
    try:
        message = str(err)[:2000]
    except BaseException:
        message = f"<{type(err).__name__}>"
    return {"type": str(type(err).__name__), "base": base.__name__, "message": message,
            "where": _student_frame(traceback.extract_tb(err.__traceback__))}


class _Replayed:
    """Mixin of the exceptions rebuilt from a recording: the message exactly as recorded."""

    def __str__(self) -> str:
        return self.replay_message


@functools.cache
def _replayed_base(base: type) -> type:
    return type(f"Replayed{base.__name__}", (_Replayed, base), {})


def _rebuild_error(info: dict) -> BaseException:
    """The exception the grader sees: same class name, a builtin base it can catch, same message."""
    base = getattr(builtins, str(info["base"]), Exception)
    if not (isinstance(base, type) and (issubclass(base, Exception) or base is SystemExit)):
        base = Exception
    try:
        err = _named_class(str(info["type"]), _replayed_base(base))()
    except Exception:
        err = _named_class(str(info["type"]), _replayed_base(Exception))()
    err.args, err.replay_message, err.student_where = (str(info["message"]),), str(info["message"]), \
        str(info["where"])
    return err


class Session:
    """The stand-ins of one question's grading, shared by the recording and the replaying side."""

    def __init__(self):
        self.standins: dict[int, Any] = {}
        self.slots: dict[int, list[tuple]] = {}        # handle -> (submodule, name, is parameter) per tensor
        self.modules: dict[int, list[nn.Module]] = {}              # handle -> the stand-in's submodules

    def op(self, handle: int, kind: str, name: str, args: tuple, kwargs: dict) -> Any:
        raise NotImplementedError

    def materialize(self, node: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        """The grader-side value of a recorded description."""
        if isinstance(node, torch.Tensor):
            return node.clone()
        if type(node) in PLAIN or type(node) in (complex, bytes):
            return node
        if type(node) in (list, tuple):
            return type(node)(self.materialize(v, args, kwargs) for v in node)
        if type(node) is not dict or TAG not in node:
            raise Diverged(f"the recording holds a {type(node).__name__}")
        kind = node[TAG]
        if kind == "dict":
            return {self.materialize(k): self.materialize(v, args, kwargs) for k, v in node["items"]}
        if kind == "ndarray":
            return node["data"].numpy().copy() if "data" in node else np.asarray(node["list"], dtype=node["dtype"])
        if kind == "ellipsis":
            return Ellipsis
        if kind == "size":
            return torch.Size(node["dims"])
        if kind == "dtype" and isinstance(dtype := getattr(torch, str(node["name"]), None), torch.dtype):
            return dtype
        if kind == "arg":
            key = node["key"]
            return args[key] if isinstance(key, int) else (kwargs or {})[key]
        if kind == "handle":
            return self.standins[node["id"]]
        if kind == "module":
            return self._module(node)
        if kind in ("callable", "object"):
            base = RemoteCallable if kind == "callable" else Remote
            self.standins[node["id"]] = _named_class(node["meta"]["type"], base)(self, node["id"], node["meta"])
            return self.standins[node["id"]]
        raise Diverged(f"the recording holds an unknown entry {kind!r}")

    def _module(self, node: dict) -> nn.Module:
        """A StandInModule tree with the recorded submodules, parameters, buffers and training flags."""
        handle, tensors = node["id"], [t.clone() for t in node["tensors"]]
        params = {i: nn.Parameter(tensors[i], requires_grad=grad) for i, grad in node["parameters"]}
        modules: list[nn.Module] = []
        for path, class_name, training in node["modules"]:
            m = _named_class(class_name, StandInModule)()
            m.training = bool(training)
            if modules:
                parent, _, leaf = path.rpartition(".")
                modules[[p for p, _, _ in node["modules"]].index(parent)].add_module(leaf, m)
            modules.append(m)
        for owner, name, index, persistent in node["owned"]:
            if index in params:
                modules[owner].register_parameter(name, params[index])
            else:
                modules[owner].register_buffer(name, tensors[index], persistent=persistent)
        for m, (path, _, _) in zip(modules, node["modules"]):
            m.__dict__["_replay"] = (self, handle, path)         # from now on, unknown attributes are recorded
        first = {index: (modules[owner], name, index in params) for owner, name, index, _ in reversed(node["owned"])}
        self.slots[handle] = [first[i] for i in range(len(tensors))]
        self.modules[handle] = modules
        self.standins[handle] = modules[0]
        return modules[0]

    def apply_module_changes(self, changes: dict) -> None:
        """Give the stand-in modules the values and flags their real modules had after a call."""
        for handle, (values, training) in changes.items():
            tensors = _tensors(self.slots[handle])
            for i, value in values:
                if tensors[i].shape == value.shape and tensors[i].dtype == value.dtype:
                    tensors[i].copy_(value)
                else:
                    tensors[i].data = value.clone()
            for m, flag in zip(self.modules[handle], training):
                m.training = bool(flag)


def _tensors(slots: list[tuple]) -> list[torch.Tensor]:
    """The tensors a module holds now (a conversion such as .double() replaces buffers)."""
    return [(m._parameters if is_param else m._buffers)[name] for m, name, is_param in slots]


class Recorder(Session):
    """The untrusted side: runs the student's code and records each call as plain data."""

    def __init__(self):
        super().__init__()
        self.real: dict[int, Any] = {}
        self.ids: dict[int, int] = {}                       # id(real object) -> handle
        self.real_slots: dict[int, list[tuple]] = {}
        self.events: list[dict] = []

    def describe(self, value: Any, args: tuple = (), kwargs: dict | None = None, depth: int = 0) -> Any:
        """Plain data standing for `value` (call with torch functions disabled)."""
        if depth > MAX_DEPTH:
            raise TypeError(f"a result nested more than {MAX_DEPTH} levels deep")
        for key, arg in [*enumerate(args), *(kwargs or {}).items()]:
            if value is arg and not isinstance(arg, PLAIN):
                return {TAG: "arg", "key": key}
        if value is None or type(value) in PLAIN or type(value) in (complex, bytes):
            return value
        if value is Ellipsis:
            return {TAG: "ellipsis"}
        for exact in (bool, int, float, complex, str, bytes):
            if isinstance(value, exact):
                return getattr(exact, f"__{exact.__name__}__", exact)(value) if exact is not bool else bool(value)
        if isinstance(value, torch.Size):
            return {TAG: "size", "dims": [int(d) for d in value]}
        if isinstance(value, torch.dtype):
            return {TAG: "dtype", "name": str(value).removeprefix("torch.")}
        if isinstance(value, torch.Tensor):
            return plain_tensor(value)
        if isinstance(value, np.generic):
            return self.describe(value.item(), depth=depth + 1)
        if isinstance(value, np.ndarray):
            return self._ndarray(value)
        if isinstance(value, (list, tuple)):
            items = [self.describe(v, args, kwargs, depth + 1) for v in list(value)]
            return tuple(items) if isinstance(value, tuple) else items
        if isinstance(value, dict):
            return {TAG: "dict", "items": [(self.describe(k, depth=depth + 1), self.describe(v, args, kwargs, depth + 1))
                                           for k, v in list(value.items())]}
        if id(value) in self.ids:
            return {TAG: "handle", "id": self.ids[id(value)]}
        if isinstance(value, nn.Module):
            return self._describe_module(value)
        if not callable(value) and (hasattr(type(value), "__array__") or hasattr(value, "__array_interface__")):
            return self._ndarray(np.asarray(value))
        return self._new_handle(value, "callable" if callable(value) else "object")

    @staticmethod
    def _ndarray(a: np.ndarray) -> dict:
        a = np.asarray(np.ma.filled(a) if isinstance(a, np.ma.MaskedArray) else a)
        try:
            return {TAG: "ndarray", "data": torch.from_numpy(np.array(a, copy=True))}
        except TypeError:
            if a.dtype == object:
                raise TypeError("a NumPy array of Python objects") from None
            return {TAG: "ndarray", "list": a.tolist(), "dtype": str(a.dtype)}

    def _register(self, value: Any) -> int:
        handle = len(self.real)
        self.real[handle], self.ids[id(value)] = value, handle
        return handle

    def _new_handle(self, value: Any, kind: str) -> dict:
        meta = {"type": str(type(value).__name__), "repr": _safe_repr(value)}
        for k in ("__name__", "__qualname__", "__doc__"):
            v = getattr(value, k, None)
            meta[k] = str.__str__(v) if isinstance(v, str) else None
        try:
            meta["source"] = str.__str__(inspect.getsource(value))
        except BaseException:
            meta["source"] = None
        return {TAG: kind, "id": self._register(value), "meta": meta}

    def _describe_module(self, m: nn.Module) -> dict:
        handle = self._register(m)
        named = list(m.named_modules(remove_duplicate=False))
        paths = {id(sub): i for i, (_, sub) in reversed(list(enumerate(named)))}
        named = [(p, s) for i, (p, s) in enumerate(named) if paths[id(s)] == i]
        index: dict[int, int] = {}
        tensors, parameters, owned, slots = [], [], [], []
        for owner, (_, sub) in enumerate(named):
            own = [(n, t, True) for n, t in sub._parameters.items() if t is not None]
            own += [(n, t, n not in sub._non_persistent_buffers_set) for n, t in sub._buffers.items() if t is not None]
            for name, t, persistent in own:
                if id(t) not in index:
                    index[id(t)] = len(tensors)
                    tensors.append(t)
                    slots.append((sub, name, sub._parameters.get(name) is t))
                    if sub._parameters.get(name) is t:
                        parameters.append((index[id(t)], bool(t.requires_grad)))
                owned.append((owner, str(name), index[id(t)], persistent))
        self.real_slots[handle] = slots
        return {TAG: "module", "id": handle, "tensors": [plain_tensor(t) for t in tensors], "parameters": parameters,
                "owned": owned, "modules": [(p, str(type(s).__name__), bool(s.training)) for p, s in named]}

    def _unwrap(self, value: Any) -> Any:
        """The grader's argument with stand-ins replaced by the student's real objects."""
        replay = getattr(value, "__dict__", {}).get("_replay") if isinstance(value, (Remote, StandInModule)) else None
        if replay is not None:
            handle, path = replay[1], (replay[2] if len(replay) > 2 else "")
            return self.real[handle].get_submodule(path) if path else self.real[handle]
        if type(value) in (list, tuple):
            return type(value)(self._unwrap(v) for v in value)
        if type(value) is dict:
            return {k: self._unwrap(v) for k, v in value.items()}
        return value

    def _push(self) -> None:
        """Copy the stand-in modules' values and flags into the student's real modules."""
        for handle, slots in self.slots.items():
            for mine, real in zip(_tensors(slots), _tensors(self.real_slots[handle])):
                if mine.shape != real.shape or mine.dtype != real.dtype:
                    real.data = mine.detach().clone()               # the grader converted it (model.double())
                elif not torch.equal(mine, real):
                    real.data.copy_(mine)
            for m in self.modules[handle]:
                self._real_module(m).training = m.training

    def _real_module(self, standin: nn.Module) -> nn.Module:
        _, handle, path = standin.__dict__["_replay"]
        return self.real[handle].get_submodule(path) if path else self.real[handle]

    def _pull(self) -> dict:
        """What changed in the student's real modules during a call: {handle: ([(i, value)], flags)}."""
        changes = {}
        for handle, slots in self.slots.items():
            pairs = zip(_tensors(slots), _tensors(self.real_slots[handle]))
            values = [(i, plain_tensor(real)) for i, (mine, real) in enumerate(pairs)
                      if not (mine.shape == real.shape and mine.dtype == real.dtype and torch.equal(mine, real))]
            flags = [self._real_module(m).training for m in self.modules[handle]]
            if values or flags != [m.training for m in self.modules[handle]]:
                changes[handle] = (values, flags)
        return changes

    def _target(self, handle: int, kind: str, name: str) -> Any:
        real = self.real[handle]
        if kind == "call":
            return real
        if kind == "forward":
            return real.get_submodule(name) if name else real
        path, _, attr = name.rpartition(".")
        return getattr(real.get_submodule(path) if path else real, attr)

    def op(self, handle: int, kind: str, name: str, args: tuple, kwargs: dict) -> Any:
        """Run the student's code for this call, record the outcome, return it as the replay will."""
        with NO_TORCH(), torch.no_grad():
            key = _key(handle, kind, name, args, kwargs)
            self._push()
            real_args, real_kwargs = self._unwrap(tuple(args)), self._unwrap(dict(kwargs))
            before = capture_args(args, kwargs)
        value, error = None, None
        try:
            target = self._target(handle, kind, name)
            value = target if kind == "getattr" else target(*real_args, **real_kwargs)
        except BaseException as err:
            error = _error_info(err)
        with NO_TORCH(), torch.no_grad():
            event = {"key": key, "error": error, "modules": self._pull(), "args": arg_changes(before, args, kwargs),
                     "modes": modes_state(), "rng": rng_state(), "result": None}
            if error is None:
                try:
                    event["result"] = self.describe(value, real_args, real_kwargs)
                except Exception as err:
                    event["error"] = {"type": "TypeError", "base": "TypeError", "where": "",
                                      "message": f"the grader cannot read what your code returned "
                                                 f"({type(value).__name__}): {err}"}
        self.events.append(event)
        with NO_TORCH(), torch.no_grad():
            self.apply_module_changes(event["modules"])
        if event["error"] is not None:
            raise _rebuild_error(event["error"])
        with NO_TORCH():
            return self.materialize(event["result"], args, kwargs)


def _safe_repr(value: Any) -> str:
    try:
        return str.__str__(repr(value))[:200]
    except BaseException:
        return f"<{type(value).__name__} object>"


class Replayer(Session):
    """The deciding side: answers each call with the recorded outcome, in order."""

    def __init__(self, events: list):
        super().__init__()
        self.events, self.cursor = events, 0

    def op(self, handle: int, kind: str, name: str, args: tuple, kwargs: dict) -> Any:
        with NO_TORCH():
            key = _key(handle, kind, name, args, kwargs)
        what = f"{kind} {name or 'of your answer'}".strip() + f" with {key[3]}"
        if self.cursor >= len(self.events):
            raise Diverged(f"the grader's call {self.cursor + 1} ({what}) is missing from the recording")
        event = self.events[self.cursor]
        self.cursor += 1
        if tuple(event["key"]) != key:
            raise Diverged(f"the grader's call {self.cursor} ({what}) differs from the recorded one")
        try:
            with NO_TORCH(), torch.no_grad():
                self.apply_module_changes(event["modules"])
                apply_arg_changes(event["args"], args, kwargs)
                set_rng_state(event["rng"])
                apply_modes(event["modes"])
        except (ValueError, TypeError, KeyError, IndexError, RuntimeError) as err:
            raise Diverged(f"the state recorded after call {self.cursor} does not fit ({err})") from None
        if event["error"] is not None:
            raise _rebuild_error(event["error"])
        with NO_TORCH():
            return self.materialize(event["result"], args, kwargs)


def record(qid: str, answer: Any, source: str | None = None) -> bytes:
    """In the untrusted child: grade `answer` through a recording stand-in; return the recording.
    `source` is the answer's source text as the notebook's kernel saw it (for `tools.source_of`)."""
    recorder = Recorder()
    with NO_TORCH():
        try:
            node, problem = recorder.describe(answer), None
        except Exception as err:
            node, problem = None, f"the grader cannot read your answer ({type(answer).__name__}): {err}"
    if isinstance(node, dict) and "meta" in node and isinstance(source, str):
        node["meta"]["source"] = source
    if problem is None:
        with NO_TORCH():
            standin = recorder.materialize(node)
        grade(qid, standin)
    buffer = io.BytesIO()
    torch.save({"answer": node, "problem": problem, "events": recorder.events}, buffer)
    return buffer.getvalue()


def replay(qid: str, recording: bytes) -> CheckResult:
    """In the deciding process: read the recording as plain data and grade it; never runs student code."""
    q = load_all()[qid]
    fail = lambda message: CheckResult(qid, False, 0.0, q.max_points, message)
    try:
        payload = torch.load(io.BytesIO(recording), weights_only=True)
        if payload["problem"] is not None:
            return fail(str(payload["problem"]))
        replayer = Replayer(list(payload["events"]))
        standin = replayer.materialize(payload["answer"])
    except Diverged as err:
        return fail(f"the recording of your code's answers is not plain data ({err}): no points")
    except Exception as err:
        return fail(f"the recording of your code's answers could not be read ({type(err).__name__}: "
                    f"{str(err)[:200]}): no points")
    try:
        return grade(qid, standin)
    except Diverged as err:
        return fail(f"{err}: your code changed how the grader ran it, no points")
