"""Test set-up: 8 CPU devices, so the fold-sharded engine runs on a real multi-device mesh.

This must run before anything imports jax, which is why it sits in conftest.py.
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# `make test` runs the modules on two workers (pytest-xdist, one module a worker at a
# time); the longest start first, so neither worker is left alone with one at the end.
LONGEST_FIRST = (
    "test_multihost.py",
    "test_tuning.py",
    "test_reliability.py",
    "test_device_suite.py",
    "test_pretrain.py",
    "test_accelerator_paths.py",
)


def pytest_collection_modifyitems(items: list) -> None:
    def rank(item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: a module's tests keep their order
