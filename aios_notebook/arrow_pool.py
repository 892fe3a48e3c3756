"""The Arrow memory pool of bulk buffers: recordings read and parsed, and text the store keeps.

pyarrow's default pool (mimalloc in the wheels) is the right one for the many small, short-lived
buffers of compute calls. For the big ones (megabytes of lines or frames per call) it was slow
here: on Linux with transparent huge pages set to ``always`` (as on the machines this kit was
measured on), fresh memory from mimalloc kept costing page faults, so concatenating 3 MB of
frames' text took 5 to 15 ms where the system allocator took 2 ms (a stall in the middle of a
live read), and a process's first ``EventStore.load`` spent about 0.8 s in the kernel, against
0.4 s with the system allocator for its big buffers. The store's small text arrays (the frames
of a live read, categories, waiting batches) use it too: with mimalloc, turning a read's 100
frames into Arrow stalled for 5 to 6 ms a few times a minute (the system allocator's worst was
0.1 ms), and reads' p99 in five alternating rounds was 6.1 ms here against 8.2 ms. Passing this pool call by call changes
nothing else in the process: ``pyarrow.set_memory_pool`` stays the application's choice.
"""

from __future__ import annotations

import pyarrow as pa

__all__ = ["BULK_POOL"]

BULK_POOL: pa.MemoryPool = pa.system_memory_pool()
