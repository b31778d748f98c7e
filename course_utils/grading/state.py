"""What a call into student code changed, as plain data: arguments, random generators, torch modes.

The recording child captures these after every call; the deciding process applies them, so that
its objects end up as the child's did. Everything captured is plain data (tensors, numbers,
strings, lists, tuples, dicts), readable with `torch.load(weights_only=True)`.
"""
from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.overrides import _get_current_function_mode_stack

PLAIN = (bool, int, float, str, type(None))
MAX_HOOKS = 100


def plain_tensor(t: torch.Tensor) -> torch.Tensor:
    """A detached, dense CPU copy of `t` of class exactly torch.Tensor (call with torch functions disabled)."""
    out = t.as_subclass(torch.Tensor).detach()
    if out.layout != torch.strided:
        out = out.to_dense()
    out = out.resolve_conj().resolve_neg().to("cpu").clone()
    if type(out) is not torch.Tensor or out.is_meta:
        raise TypeError(f"a {type(t).__name__} the grader cannot read")
    return out


def _plain(value: Any) -> Any:
    """`value` if it is plain data (recursively), else None (a tensor becomes a plain copy)."""
    if type(value) in PLAIN:
        return value
    if isinstance(value, torch.Tensor):
        return plain_tensor(value)
    if type(value) in (list, tuple):
        items = [_plain(v) for v in value]
        return None if any(i is None and v is not None for i, v in zip(items, value)) else type(value)(items)
    return None


# ---------- the random generators ----------

def rng_state() -> dict:
    """The global torch, NumPy and Python random states as plain data."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, words, gauss = random.getstate()
    return {"torch": torch.get_rng_state(), "numpy": (str(kind), torch.from_numpy(keys.astype(np.int64)),
                                                      int(pos), int(has_gauss), float(cached)),
            "python": (int(version), tuple(int(w) for w in words), gauss)}


def set_rng_state(state: dict) -> None:
    """Put back the random states `rng_state` captured."""
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, words, gauss = state["python"]
    random.setstate((version, tuple(words), gauss))


# ---------- active torch function modes (a grader counting the torch calls a student makes) ----------

def modes_state() -> list:
    """(class name, plain attributes) of each active TorchFunctionMode, innermost last."""
    return [(type(m).__name__, {k: v for k, v in vars(m).items() if type(v) in PLAIN})
            for m in _get_current_function_mode_stack()]


def apply_modes(recorded: list) -> None:
    """Give the active modes the attributes recorded; ValueError if the stacks differ."""
    stack = _get_current_function_mode_stack()
    if [type(m).__name__ for m in stack] != [name for name, _ in recorded]:
        raise ValueError("the active torch function modes differ")
    for mode, (_, attrs) in zip(stack, recorded):
        for k, v in attrs.items():
            if k in vars(mode) and type(v) in PLAIN:            # only the mode's own plain attributes
                setattr(mode, k, v)


# ---------- arguments the grader passed and the student's code changed ----------

def _module_state(m: nn.Module) -> dict:
    return {"tensors": {k: plain_tensor(v) for k, v in m.state_dict(keep_vars=True).items()},
            "grads": {k: None if p.grad is None else plain_tensor(p.grad) for k, p in m.named_parameters()},
            "training": [s.training for _, s in m.named_modules()],
            "hooks": [len(s._forward_hooks) + len(s._forward_pre_hooks) for _, s in m.named_modules()]}


def _axes_state(ax: Any) -> list:
    """Each image of a matplotlib Axes: data, mask, colour map (name, colours) and norm."""
    images = []
    for im in ax.images:
        arr = im.get_array()
        norm, cmap = im.norm, im.cmap
        images.append({"data": torch.from_numpy(np.asarray(np.ma.getdata(arr), dtype=np.float64).copy()),
                       "mask": torch.from_numpy(np.ma.getmaskarray(arr).copy()),
                       "cmap": str(cmap.name), "colors": torch.from_numpy(cmap(np.linspace(0, 1, cmap.N))),
                       "norm": str(type(norm).__name__),
                       **{k: _plain(getattr(norm, k, None)) for k in ("vmin", "vmax", "vcenter", "halfrange")}})
    return images


def _is_axes(value: Any) -> bool:
    return type(value).__module__.startswith("matplotlib.") and hasattr(value, "images") and hasattr(value, "imshow")


def _capture(value: Any) -> tuple[str, Any] | None:
    if isinstance(value, torch.Tensor):
        return "tensor", plain_tensor(value)
    if isinstance(value, nn.Module) and not getattr(value, "_replay_standin", False):
        return "module", _module_state(value)
    if isinstance(value, torch.optim.Optimizer):
        return "optimizer", value.state_dict()
    if _is_axes(value):
        return "axes", _axes_state(value)
    return None


def _leaves(args: tuple, kwargs: dict) -> list[tuple[Any, Any]]:
    return [(i, a) for i, a in enumerate(args)] + [(k, v) for k, v in kwargs.items()]


def capture_args(args: tuple, kwargs: dict) -> dict:
    """The state of each argument the student's code could change in place."""
    return {key: c for key, value in _leaves(args, kwargs) if (c := _capture(value)) is not None}


def _differs(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype
                    and a.shape == b.shape and torch.equal(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() != b.keys() or any(_differs(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) != len(b) or any(_differs(x, y) for x, y in zip(a, b))
    return a != b


def arg_changes(before: dict, args: tuple, kwargs: dict) -> list:
    """(argument key, kind, new state) for each argument whose state changed during the call."""
    changes = []
    for key, (kind, old) in before.items():
        value = args[key] if isinstance(key, int) else kwargs[key]
        kind_now, new = _capture(value)
        if kind == "module":
            new["hooks"] = [n - o for n, o in zip(new["hooks"], old["hooks"])]
            if _differs({**old, "hooks": new["hooks"]}, new) or any(new["hooks"]):
                changes.append((key, kind, new))
        elif _differs(old, new):
            changes.append((key, kind, new))
    return changes


def _noop_hook(*_: Any) -> None:
    """Stands for a hook the student's code left registered (it never ran in this process)."""


def _apply_module(m: nn.Module, state: dict) -> None:
    for k, v in m.state_dict(keep_vars=True).items():
        new = state["tensors"][k]
        if v.shape == new.shape and v.dtype == new.dtype:
            v.copy_(new)
        else:
            v.data = new
    for k, p in m.named_parameters():
        p.grad = state["grads"][k]
    for (_, sub), training, added in zip(m.named_modules(), state["training"], state["hooks"]):
        sub.training = training
        for _ in range(min(max(0, added), MAX_HOOKS)):
            sub.register_forward_hook(_noop_hook)


def _apply_axes(ax: Any, images: list) -> None:
    from matplotlib import colors

    for im in list(ax.images):
        im.remove()
    for d in images:
        cmap = colors.ListedColormap(d["colors"].numpy(), name=d["cmap"])
        if d["norm"] == "CenteredNorm":
            norm = colors.CenteredNorm(vcenter=d["vcenter"], halfrange=d["halfrange"])
        elif d["norm"] == "TwoSlopeNorm":
            norm = colors.TwoSlopeNorm(d["vcenter"], vmin=d["vmin"], vmax=d["vmax"])
        else:
            norm = colors.Normalize(vmin=d["vmin"], vmax=d["vmax"])
        ax.imshow(np.ma.masked_array(d["data"].numpy(), mask=d["mask"].numpy()), cmap=cmap, norm=norm)


def apply_arg_changes(changes: list, args: tuple, kwargs: dict) -> None:
    """Make the deciding process's arguments what the student's code left them as in the child."""
    for key, kind, state in changes:
        value = args[key] if isinstance(key, int) else kwargs[key]
        if kind == "tensor" and isinstance(value, torch.Tensor):
            if value.shape == state.shape and value.dtype == state.dtype:
                value.copy_(state)
            else:
                value.data = state
        elif kind == "module" and isinstance(value, nn.Module):
            _apply_module(value, state)
        elif kind == "optimizer" and isinstance(value, torch.optim.Optimizer):
            value.load_state_dict(state)
        elif kind == "axes" and _is_axes(value):
            _apply_axes(value, state)
        else:
            raise ValueError(f"argument {key!r} is not a {kind} here")
