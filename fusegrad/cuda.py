"""``fusegrad.cuda``: as much of ``torch.cuda`` as the eager API needs."""
from fusegrad.runtime.devices import cuda_available as is_available
from fusegrad.tracer.devices import device_count

__all__ = ["is_available", "device_count"]
