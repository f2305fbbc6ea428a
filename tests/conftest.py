"""Test set-up: 8 CPU devices, so the fold-sharded engine runs on a real multi-device mesh.

This must run before anything imports jax, which is why it sits in conftest.py.
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
