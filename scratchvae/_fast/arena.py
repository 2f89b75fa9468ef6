"""One allocation for the training step's flat arrays, backed by huge pages where the kernel allows."""
import numpy as np

HUGE_PAGE = 2 << 20


def arena(count, size, dtype):
    """``count`` zeroed 1-D arrays of ``size`` elements, cut from one allocation, each 64-byte aligned.

    Parameters, gradients and moments are streamed every step (28 bytes per
    parameter in the Adam pass). When the arrays take 2 MiB or more together,
    the allocation is an anonymous private memory map, 2 MiB aligned and
    advised ``MADV_HUGEPAGE`` where the platform has it, so the kernel can back
    it with transparent huge pages (5 TLB entries for the standard model's
    10.4 MB instead of about 2,550; what that buys: docs/performance.md).
    """
    import mmap

    itemsize = np.dtype(dtype).itemsize
    stride = -(-size * itemsize // 64) * 64  # bytes per array, rounded up to 64
    nbytes = count * stride
    advise = getattr(mmap, "MADV_HUGEPAGE", None)
    if advise is None or nbytes < HUGE_PAGE:
        raw = np.zeros(nbytes + 64, np.uint8)
        start = -raw.ctypes.data % 64
    else:
        span = -(-nbytes // HUGE_PAGE) * HUGE_PAGE  # whole huge pages
        buf = mmap.mmap(-1, span + HUGE_PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)  # zero-filled
        raw = np.frombuffer(buf, np.uint8)
        start = -raw.ctypes.data % HUGE_PAGE
        try:
            buf.madvise(advise, start, span)
        except OSError:  # e.g. a kernel built without transparent huge pages: plain pages then
            pass
    return [raw[start + i * stride:start + i * stride + size * itemsize].view(dtype) for i in range(count)]
