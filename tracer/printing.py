"""``repr`` of eager tensors, digit for digit as PyTorch prints (torch/_tensor_str.py).

Four decimals; integral floats as ``1.``; scientific notation when the magnitudes
span more than 1000x or leave [1e-4, 1e8); rows wrapped at 80 columns; tensors of
more than 1000 elements summarized with ``...``; suffixes such as
``requires_grad=True``, ``grad_fn=<MulBackward0>`` and ``dtype=fusegrad.float64``.
"""
from __future__ import annotations

import math

import numpy as np

from fusegrad.tracer.devices import host_array

PRECISION = 4
THRESHOLD = 1000
EDGEITEMS = 3
LINEWIDTH = 80


class _Formatter:
    """How every element of one tensor is written, decided from all of them."""

    def __init__(self, data: np.ndarray) -> None:
        self.floating = data.dtype.kind == "f"
        self.int_mode = True
        self.sci_mode = False
        self.max_width = 1
        flat = data.reshape(-1)
        if not self.floating:
            for value in flat.tolist():
                self.max_width = max(self.max_width, len(f"{value}"))
            return
        values = flat[np.isfinite(flat) & (flat != 0)]
        if values.size == 0:
            return
        magnitudes = np.abs(values.astype(np.float64))
        smallest, largest = float(magnitudes.min()), float(magnitudes.max())
        values = values.tolist()
        self.int_mode = all(v == math.ceil(v) for v in values)
        if self.int_mode:
            if largest / smallest > 1000.0 or largest > 1.0e8:
                self.sci_mode = True
                self._widen(values, "{:.%de}" % PRECISION, 0)
            else:
                self._widen(values, "{:.0f}", 1)
        elif largest / smallest > 1000.0 or largest > 1.0e8 or smallest < 1.0e-4:
            self.sci_mode = True
            self._widen(values, "{:.%de}" % PRECISION, 0)
        else:
            self._widen(values, "{:.%df}" % PRECISION, 0)

    def _widen(self, values: list, spec: str, extra: int) -> None:
        for value in values:
            self.max_width = max(self.max_width, len(spec.format(value)) + extra)

    def format(self, value) -> str:
        if self.floating:
            if self.sci_mode:
                text = "{:{}.{}e}".format(value, self.max_width, PRECISION)
            elif self.int_mode:
                text = f"{value:.0f}"
                if not (math.isinf(value) or math.isnan(value)):
                    text += "."
            else:
                text = "{:.{}f}".format(value, PRECISION)
        else:
            text = f"{value}"
        return (self.max_width - len(text)) * " " + text


def _summarized(data: np.ndarray) -> np.ndarray:
    """The elements that a summarized print shows (for choosing the format)."""
    if data.ndim == 0:
        return data
    if data.shape[0] > 2 * EDGEITEMS:
        rows = list(data[:EDGEITEMS]) + list(data[-EDGEITEMS:])
    else:
        rows = list(data)
    if data.ndim == 1:
        return np.asarray(rows)
    return np.stack([_summarized(row) for row in rows])


def _vector(data: np.ndarray, indent: int, summarize: bool, formatter: _Formatter) -> str:
    element_length = formatter.max_width + 2
    per_line = max(1, int(math.floor((LINEWIDTH - indent) / element_length)))
    if summarize and data.shape[0] > 2 * EDGEITEMS:
        items = ([formatter.format(v) for v in data[:EDGEITEMS].tolist()] + [" ..."]
                 + [formatter.format(v) for v in data[-EDGEITEMS:].tolist()])
    else:
        items = [formatter.format(v) for v in data.tolist()]
    lines = [", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)]
    return "[" + ("," + "\n" + " " * (indent + 1)).join(lines) + "]"


def _nested(data: np.ndarray, indent: int, summarize: bool, formatter: _Formatter) -> str:
    if data.ndim == 0:
        return formatter.format(data.item())
    if data.ndim == 1:
        return _vector(data, indent, summarize, formatter)
    if summarize and data.shape[0] > 2 * EDGEITEMS:
        rows = ([_nested(data[i], indent + 1, summarize, formatter) for i in range(EDGEITEMS)]
                + ["..."]
                + [_nested(data[i], indent + 1, summarize, formatter)
                   for i in range(data.shape[0] - EDGEITEMS, data.shape[0])])
    else:
        rows = [_nested(data[i], indent + 1, summarize, formatter) for i in range(data.shape[0])]
    return "[" + ("," + "\n" * (data.ndim - 1) + " " * (indent + 1)).join(rows) + "]"


def format_array(data: np.ndarray, indent: int) -> str:
    """The bracketed numbers of a tensor's repr (no prefix, no suffixes)."""
    if data.dtype == np.float16:
        data = data.astype(np.float32)
    summarize = data.size > THRESHOLD
    formatter = _Formatter(_summarized(data) if summarize else data)
    return _nested(data, indent, summarize, formatter)


def _add_suffixes(text: str, suffixes: list[str], indent: int) -> str:
    parts = [text]
    last_line_len = len(text) - text.rfind("\n") + 1
    for suffix in suffixes:
        if last_line_len + len(suffix) + 2 > LINEWIDTH:
            parts.append(",\n" + " " * indent + suffix)
            last_line_len = indent + len(suffix)
        else:
            parts.append(", " + suffix)
            last_line_len += len(suffix) + 2
    parts.append(")")
    return "".join(parts)


def tensor_repr(tensor) -> str:
    if tensor._mode.traced:
        return f"Tensor(traced {tensor._mode.value.type_str})"
    prefix = "tensor("
    indent = len(prefix)
    data = host_array(tensor._data)
    suffixes = []
    if tensor._device.type != "cpu":
        suffixes.append(f"device='{tensor._device}'")
    default = data.dtype in (np.dtype(np.float32), np.dtype(np.int64), np.dtype(np.bool_))
    if data.size == 0:
        if data.ndim != 1:
            suffixes.append(f"size={tuple(data.shape)}")
        if data.dtype != np.dtype(np.float32):
            suffixes.append(f"dtype={tensor.dtype}")
        body = "[]"
    else:
        if not default:
            suffixes.append(f"dtype={tensor.dtype}")
        body = format_array(data, indent)
    if tensor._grad_fn is not None:
        suffixes.append(f"grad_fn=<{tensor._grad_fn.name()}>")
    elif tensor._requires_grad:
        suffixes.append("requires_grad=True")
    return _add_suffixes(prefix + body, suffixes, indent)
