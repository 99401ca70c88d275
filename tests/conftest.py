import gc
import os

os.environ.setdefault("MPLBACKEND", "Agg")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_enable_x64", True)

# Every compiled executable keeps its machine code in memory mappings of its own, and jax keeps
# every executable it compiled alive in its caches. An xdist worker runs half the suite in one
# process (thousands of compilations; test_tune + test_stiff alone leave ~18,000 mappings), so it
# reached Linux's vm.max_map_count (65530): LLVM then failed with "Cannot allocate memory" and
# the worker died inside backend_compile (the crashes of stop 23's CI). Clearing jax's caches
# between modules once the count passes this mark frees them (measured: back to ~1,200).
_MAX_MAPPINGS = 30_000


def _mappings() -> int:
    try:
        with open("/proc/self/maps") as f:
            return sum(1 for _ in f)
    except OSError:  # not Linux: no limit to watch
        return 0


@pytest.fixture(autouse=True, scope="module")
def _bounded_compilation_cache():
    yield
    if _mappings() > _MAX_MAPPINGS:
        jax.clear_caches()
        gc.collect()
