"""Running a kernel plan on a CUDA device through numba.cuda (or Numba's CUDA
simulator, with NUMBA_ENABLE_CUDASIM=1 set before numba is imported).

Arguments already on the device (anything with `__cuda_array_interface__`, or a
Numba device array: see runtime/device_arrays.py) are used where they are, and the
results come back as device arrays: a call then moves nothing across the bus. NumPy
arguments are copied to the device, and the results of an all-NumPy call copied
back as NumPy arrays: each such call pays both copies. Every intermediate stays on
the device, buffers included (filled there). Library calls run on the device where
a kernel exists for them (matmul, transpose; reshape is a view) and otherwise on
the host, with their operands copied over and back: the plan's reason for the call
says which.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import time
import warnings
from typing import Callable, Sequence

import numpy as np

from fusegrad.codegen import Buffer, Kernel, KernelSource, LibraryCall, Plan, compile_kernel
from fusegrad.codegen.cuda import (BLOCK, FILL_ENTRY, MATMUL_TILE, MAX_BATCH_BLOCKS, emit_cuda_bmm,
                                   emit_cuda_fill, emit_cuda_matmul, emit_cuda_reduce,
                                   emit_cuda_transpose, reduce_entry, transpose_entry)
from fusegrad.ir import primitives as P
from fusegrad.ir.interpreter import run_node, run_node_outputs
from fusegrad.runtime import numba_cache, stats
from fusegrad.runtime.device_arrays import as_numba, device_copy_into, to_cupy, wants_cupy
from fusegrad.runtime.devices import require_cuda
from fusegrad.runtime.executable import Executable, KernelStep, _kernel_array
from fusegrad.runtime.loader import load, source_path

try:
    from numba import cuda
except ImportError:  # a Numba whose CUDA target is a separate package (numba-cuda)
    cuda = None
else:
    numba_cache.install_cuda()   # compiled CUDA kernels go where the CPU's do

# Numba warns at every launch of fewer than 128 blocks. An epilogue is one block by
# design, and small shapes are the caller's choice, not a mistake to report.
warnings.filterwarnings("ignore",
                        message=r"Grid size \d+ will likely result in GPU under-utilization")


class CudaLauncher:
    """Launches a CUDA kernel, timing the first launch (compile or disk-cache load)."""

    def __init__(self, function) -> None:
        self.function = function
        self.ready = False

    def __call__(self, grid, block, *args) -> None:
        if self.ready:
            self.function[grid, block](*args)
        else:
            stats_of = getattr(self.function, "stats", None)  # the simulator has none
            before = dict(stats_of.cache_hits) if stats_of is not None else None
            began = time.perf_counter()
            self.function[grid, block](*args)
            hits = dict(self.function.stats.cache_hits) if before is not None else None
            stats.count("cache_loads" if hits and hits != before else "compiles")
            stats.count("compile_seconds", time.perf_counter() - began)
            self.ready = True
        stats.count("kernels_launched")


# The most blocks a loop kernel is launched with: enough to fill a large GPU (an
# H100 holds about 2000 blocks of 128 threads). Beyond it threads take several
# outer points each, which keeps the partial buffers, and so the epilogue's
# work, small. Tests lower it to exercise that loop.
MAX_BLOCKS = 2048


def _counted(count: int, noun: str) -> str:
    return f"{count} {noun}{'s' if count != 1 else ''}"


def _blocks(threads: int, per_block: int) -> int:
    return max(1, -(-threads // per_block))


class CudaKernelStep(KernelStep):
    """One loop kernel: the main kernel, one thread per outer point, then its
    epilogue kernel (partials combined, scalars, column results) when it has one."""

    def __init__(self, kernel: Kernel, compiled: KernelSource) -> None:
        super().__init__(kernel, compiled, CudaLauncher(load(compiled.text, compiled.entry)))
        self.blocks = min(_blocks(compiled.outer_points, BLOCK), MAX_BLOCKS)
        self.epilogue = (CudaLauncher(load(compiled.text, compiled.epilogue))
                         if compiled.epilogue else None)

    def note(self) -> str:
        """For the dump: how the kernel is launched."""
        text = f"; launched on {_counted(self.blocks, 'block')} of {BLOCK} threads"
        if self.epilogue is not None:
            blocks = _blocks(self.compiled.epilogue_threads, BLOCK)
            text += f", then {self.compiled.epilogue} on {_counted(blocks, 'block')}"
        return text

    def run(self, env: dict, threads: int = 0) -> None:
        args = [env[v] for v in self.inputs]
        arrays = [self._allocate(b) for b in self.compiled.buffers]
        arguments = (*args, *arrays, self.blocks, *self.compiled.domain)
        self.launch(self.blocks, BLOCK, *arguments)
        if self.epilogue is not None:
            self.epilogue(_blocks(self.compiled.epilogue_threads, BLOCK), BLOCK, *arguments)
        env.update(zip(self.outputs, arrays))

    def _allocate(self, buffer: Buffer):
        shape = (self.blocks,) + buffer.shape if buffer.chunked else buffer.shape
        array = cuda.device_array(shape, buffer.dtype)
        if buffer.fill is not None:
            # Filled on the device: nothing crosses the bus per call.
            flat = array.reshape(array.size)
            _fill()(min(_blocks(array.size, BLOCK), MAX_BLOCKS), BLOCK,
                    flat, buffer.dtype.type(buffer.fill))
        return array


class CudaLibraryStep:
    """A library call on device arrays."""

    def __init__(self, call: LibraryCall) -> None:
        self.node = call.node
        self.inputs = call.inputs
        self.outputs = call.outputs
        self.run_call: Callable[[list], object] = self._host
        lower = DEVICE_LOWERINGS.get(call.node.primitive)
        how = lower(self) if lower is not None else None
        self.call = dataclasses.replace(call, reason=_cuda_reason(call.reason, how))

    def _lower_matmul(self) -> str:
        dtype = self.node.out.dtype
        if _cupy() is not None:
            self.run_call = self._cublas_matmul
            return "cuBLAS, through CuPy (cupy.matmul on the device arrays, no copy)"
        if self.node.out.ndim > 2:
            return self._lower_batched_matmul()
        self.source = emit_cuda_matmul(dtype)
        self.kernel = CudaLauncher(load(self.source, f"matmul_{dtype.name}"))
        self.run_call = self._matmul
        rows, columns = self.node.out.shape
        self.launch = (f"grid {_blocks(columns, MATMUL_TILE)}x{_blocks(rows, MATMUL_TILE)} "
                       f"of {MATMUL_TILE}x{MATMUL_TILE} threads")
        return f"a tiled shared-memory CUDA kernel, {self.launch} ({WITHOUT_CUPY})"

    def _lower_batched_matmul(self) -> str:
        dtype = self.node.out.dtype
        self.kernel = CudaLauncher(load(emit_cuda_bmm(dtype), f"bmm_{dtype.name}"))
        batch = self.node.out.shape[:-2]
        # Which matrix of each operand the z-th product reads: its batch index under
        # NumPy's broadcasting, fixed by the static shapes, so computed once here.
        self.batch_maps = [
            cuda.to_device(np.ascontiguousarray(np.broadcast_to(
                np.arange(int(np.prod(v.shape[:-2], dtype=np.int64))).reshape(v.shape[:-2]),
                batch).ravel()))
            for v in self.inputs]
        self.run_call = self._batched_matmul
        self.source = emit_cuda_bmm(dtype)
        shape = self.node.out.shape
        self.launch = (f"grid {_blocks(shape[-1], MATMUL_TILE)}x{_blocks(shape[-2], MATMUL_TILE)}"
                       f"x{max(1, min(int(np.prod(batch, dtype=np.int64)), MAX_BATCH_BLOCKS))} "
                       f"of {MATMUL_TILE}x{MATMUL_TILE} threads")
        return (f"a tiled shared-memory CUDA kernel, one grid layer per matrix of the batch, "
                f"{self.launch} ({WITHOUT_CUPY})")

    def _lower_reshape(self) -> str:
        self.run_call = self._reshape
        return "a view of the device array"

    def _lower_transpose(self) -> str | None:
        if not self.node.out.shape:
            return None   # a 0-d transpose: nothing to launch threads over
        perm = tuple(self.node.param("perm"))
        self.source = emit_cuda_transpose(perm)
        self.kernel = CudaLauncher(load(self.source, transpose_entry(perm)))
        self.run_call = self._transpose
        blocks = _blocks(int(np.prod(self.node.out.shape)), BLOCK)
        self.launch = f"{_counted(blocks, 'block')} of {BLOCK} threads"
        return f"a CUDA copy kernel, {self.launch}"

    def _lower_reduction(self) -> str | None:
        """A reduction over any axes (s3 item 4): (A, R, B) with R the reduced axes,
        after a device transpose where they are not adjacent."""
        node, x = self.node, self.inputs[0]
        if node.out.dtype.kind != "f" or x.dtype != node.out.dtype or not x.shape:
            return None   # (integer reductions: their identities are the CPU's business)
        axes = sorted(a % x.ndim for a in node.param("axes"))
        sizes = [int(d) for d in x.shape]
        self.reduce_perm = None
        self.source = emit_cuda_reduce(node)
        if axes != list(range(axes[0], axes[-1] + 1)):   # axes apart: reduced axes last
            self.reduce_perm = tuple([a for a in range(x.ndim) if a not in axes] + axes)
            self.source = emit_cuda_transpose(self.reduce_perm) + "\n\n" + self.source
            self.transpose_kernel = CudaLauncher(load(self.source,
                                                      transpose_entry(self.reduce_perm)))
            sizes = [sizes[p] for p in self.reduce_perm]
            axes = list(range(x.ndim - len(axes), x.ndim))
        product = lambda ds: int(np.prod(ds, dtype=np.int64))   # noqa: E731
        self.arb = (product(sizes[:axes[0]]), product(sizes[axes[0]:axes[-1] + 1]),
                    product(sizes[axes[-1] + 1:]))
        self.transposed_shape = tuple(sizes)
        self.kernel = CudaLauncher(load(self.source, reduce_entry(node)))
        self.run_call = self._reduce
        A, R, B = self.arb
        self.launch = (f"{_counted(min(_blocks(A * B, BLOCK), MAX_BLOCKS), 'block')} of {BLOCK} "
                       f"threads over (A, R, B) = ({A}, {R}, {B})")
        first = (f"a CUDA transpose {self.reduce_perm} to make the reduced axes adjacent, then "
                 if self.reduce_perm else "")
        return f"{first}a CUDA kernel, a thread per output, {self.launch}"

    def _reduce(self, args: list):
        x = args[0]
        if self.reduce_perm is not None:
            moved = cuda.device_array(self.transposed_shape, x.dtype)
            self.transpose_kernel(_blocks(x.size, BLOCK), BLOCK, x.reshape(self.inputs[0].shape),
                                  moved, *self.transposed_shape)
            x = moved
        A, R, B = self.arb
        out = cuda.device_array(A * B, self.node.out.dtype)
        if A * B:
            self.kernel(min(_blocks(A * B, BLOCK), MAX_BLOCKS), BLOCK, x.reshape(x.size), out,
                        A, R, B)
        return out.reshape(self.node.out.shape or (1,))

    def run(self, env: dict, threads: int = 0) -> None:
        if self.node.primitive.multiple_results:   # a scan, run by the interpreter
            arrays = [_to_host(a).reshape(v.shape) for a, v in zip(
                [env[v] for v in self.inputs], self.inputs)]
            results = run_node_outputs(self.node, arrays)
            env.update((v, _to_device(r)) for v, r in zip(self.node.outputs, results))
            return
        env[self.node.out] = self.run_call([env[v] for v in self.inputs])
        stats.count("library_calls")

    def _cublas_matmul(self, args: list):
        cupy = _cupy()
        dtype = self.node.out.dtype
        a, b = (cupy.asarray(x).astype(dtype, copy=False) for x in args)
        product = cupy.ascontiguousarray(cupy.matmul(a, b)).reshape(self.node.out.shape or (1,))
        # Both libraries launch on the legacy default stream: ordered, no sync needed.
        return cuda.as_cuda_array(product)   # the same memory, kept alive by the wrapper

    def _matmul(self, args: list):
        a, b = args
        out = cuda.device_array(self.node.out.shape, self.node.out.dtype)
        rows, columns = self.node.out.shape
        grid = (_blocks(columns, MATMUL_TILE), _blocks(rows, MATMUL_TILE))
        self.kernel(grid, (MATMUL_TILE, MATMUL_TILE), a, b, out)
        return out

    def _batched_matmul(self, args: list):
        a, b = (x.reshape((int(np.prod(v.shape[:-2], dtype=np.int64)),) + v.shape[-2:])
                for x, v in zip(args, self.inputs))
        shape = self.node.out.shape
        batch = int(np.prod(shape[:-2], dtype=np.int64))
        out = cuda.device_array((batch,) + shape[-2:], self.node.out.dtype)
        grid = (_blocks(shape[-1], MATMUL_TILE), _blocks(shape[-2], MATMUL_TILE),
                max(1, min(batch, MAX_BATCH_BLOCKS)))
        self.kernel(grid, (MATMUL_TILE, MATMUL_TILE), a, b, out, *self.batch_maps)
        return out.reshape(shape)

    def _reshape(self, args: list):
        return args[0].reshape(self.node.out.shape or (1,))

    def _transpose(self, args: list):
        shape = self.node.out.shape
        out = cuda.device_array(shape, self.node.out.dtype)
        self.kernel(_blocks(int(np.prod(shape)), BLOCK), BLOCK, args[0], out, *shape)
        return out

    def _host(self, args: list):
        arrays = [_to_host(a).reshape(v.shape) for a, v in zip(args, self.inputs)]
        return _to_device(run_node(self.node, arrays))


# Why a product is not cuBLAS's: the plan's reason says so.
WITHOUT_CUPY = "CuPy is not installed: pip install cupy-cuda12x for cuBLAS"


@functools.cache
def _cupy():
    """CuPy, for cuBLAS, where it is installed and usable (never on the simulator,
    whose arrays are host memory)."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
        return None
    try:
        import cupy
        cupy.cuda.runtime.getDeviceCount()
    except Exception:   # not installed, or no driver for it: the kernels below run
        return None
    return cupy


# The library calls the device runs itself: each sets up its step and says how (None:
# on the host after all). The other primitives that can be library calls are
# `host_only` in their record (tests/ir/test_registry.py checks).
DEVICE_LOWERINGS: dict = {
    P.matmul: CudaLibraryStep._lower_matmul,
    P.reshape: CudaLibraryStep._lower_reshape,
    P.transpose: CudaLibraryStep._lower_transpose,
    P.reduce_sum: CudaLibraryStep._lower_reduction,   # (over axes the loop kernels do not take)
    P.reduce_max: CudaLibraryStep._lower_reduction,
    P.reduce_min: CudaLibraryStep._lower_reduction,
}


def _cuda_reason(reason: str, how: str | None) -> str:
    """The planner's reason says how the CPU runs the call ("what: how"); on CUDA
    the how is the device's, or the round trip through the host."""
    if how is None:
        return f"{reason}; on CUDA: copied to the host, run by NumPy, copied back"
    what = reason.split(": ")[0] if ": " in reason else reason
    return f"{what}: {how}"


# Copies across the bus made by running plans (not by setting them up: constants
# and index maps go to the device once, with the executable). Tests read them.
bus_copies = {"host_to_device": 0, "device_to_host": 0}


def _to_device(array: np.ndarray):
    # Kernels take 0-d arrays as shape (1,) and C-contiguous memory.
    bus_copies["host_to_device"] += 1
    return cuda.to_device(_kernel_array(np.asarray(array)))


def _to_host(array) -> np.ndarray:
    bus_copies["device_to_host"] += 1
    return array.copy_to_host()


class CudaExecutable(Executable):
    """A compiled graph whose kernels run on the CUDA device."""

    def __init__(self, plan: Plan) -> None:
        require_cuda()
        super().__init__(plan, device="cuda")
        # The plan as CUDA runs it: library calls say how (the planner's plan, shared
        # with whoever planned it, is left as it is).
        steps = [s.call if isinstance(s, CudaLibraryStep) else s.kernel for s in self.steps]
        self.plan = dataclasses.replace(plan, steps=steps)
        # Constants go to the device once, with the executable.
        self.constants = {v: cuda.to_device(_kernel_array(np.asarray(a)))
                          for v, a in self.constants.items()}

    def describe(self) -> str:
        """The CPU's dump (plan, loop kernels with their launch configuration), then
        the library kernels the device runs for matmul and transpose calls."""
        text = super().describe()
        library: dict[str, list] = {}
        for step in self.steps:
            if isinstance(step, CudaLibraryStep) and getattr(step, "source", None):
                library.setdefault(step.source, []).append(step)
        if not library:
            return text
        lines = [text.rstrip("\n"), "", "# library kernels on the device"]
        for source, steps in library.items():
            launches = "; ".join(dict.fromkeys(
                f"{s.node.primitive.name} to {s.node.out.dtype}{list(s.node.out.shape)}: {s.launch}"
                for s in steps))
            lines.append(f"\n# ---- {source_path(source).name}  ({launches})")
            lines.append(source.rstrip("\n"))
        return "\n".join(lines) + "\n"

    def _compile(self, step):
        if isinstance(step, LibraryCall):
            return CudaLibraryStep(step)
        return CudaKernelStep(step, compile_kernel(step, self.names, self.plan, "cuda"))

    def __call__(self, args: Sequence) -> list:
        """NumPy arrays in (each copied to the device), NumPy arrays out (copied
        back); any device array in, device arrays out, nothing copied across the
        bus (see runtime/device_arrays.py for the kinds)."""
        env: dict = dict(self.constants)
        resident = False
        for v, a in zip(self.inputs, args):
            if isinstance(a, np.ndarray):
                env[v] = _to_device(a)
            else:
                env[v] = _device_input(a)
                resident = True
        for step in self.steps:
            step.run(env)
        if not resident:
            # copy_to_host gives fresh arrays: no output aliases an input or another output.
            return [_to_host(env[v]).reshape(v.shape) for v in self.outputs]
        # Outputs that are inputs, constants, views of them or repeats are copied on
        # the device (Executable's rule): the caller may write to what comes back.
        outputs = [_device_copy(env[v]) if copy else env[v]
                   for v, copy in zip(self.outputs, self._copy)]
        outputs = [a.reshape(v.shape) for a, v in zip(outputs, self.outputs)]
        if wants_cupy(args):
            return [to_cupy(a) for a in outputs]
        return outputs


@functools.cache
def _fill() -> CudaLauncher:
    return CudaLauncher(load(emit_cuda_fill(), FILL_ENTRY))


def _device_input(array):
    """A device array as the kernels take it: a Numba device array, C-contiguous,
    at least 1-d, on the caller's memory (kernels never write their inputs)."""
    array = as_numba(array)
    if not array.is_c_contiguous():
        # A strided view (a slice, a transposed or expanded eager tensor): the kernels
        # index C-contiguous arrays, so a contiguous copy, made on the device.
        copy = cuda.device_array(array.shape, array.dtype)
        device_copy_into(copy, array)
        array = copy
    return array.reshape(1) if array.ndim == 0 else array


def _device_copy(array):
    copy = cuda.device_array(array.shape, array.dtype)
    copy.copy_to_device(array)
    return copy
