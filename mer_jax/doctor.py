r"""What this machine gives mer-jax, one line per fact, and a verdict.

  python -m mer_jax.doctor          # the facts and the verdict
  python -m mer_jax.doctor --json   # the same as one JSON object (the Colab notebook reads it)

Prints the Python and jax/jaxlib, flax and orbax-checkpoint versions; the backend jax
uses, its devices (count and kind) and their memory; what `engine.mode=auto` and
`engine.loop=auto` resolve to here; whether the data cache holds builds; whether dlib's
landmark model is installed. The verdict says whether training can run and on what;
the commonest set-up mistake, an accelerator that is attached while jax runs on the CPU
(a CPU jaxlib installed over the runtime's own), is named with its fix.

Exit code 0 when training can run (warnings included), 1 when it cannot (jax itself
does not import or start). Nothing here fails for a missing data cache or landmark
model: the first is built on first use, the second only matters for raw frames.
"""

import argparse
import dataclasses
import glob
import importlib.metadata
import json
import platform
import shutil
import sys
from pathlib import Path
from typing import Any

import ml_collections

# The distributions whose versions decide what runs (jax and jaxlib must match).
_VERSIONED = ("jax", "jaxlib", "flax", "orbax-checkpoint")


@dataclasses.dataclass(frozen=True)
class Fact:
    """One printed line. `problem`: what stops training; `warning`: what works, but not as
    it should (both end up in the verdict)."""

    name: str
    value: str
    problem: str | None = None
    warning: str | None = None


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def attached_accelerators() -> list[str]:
    """Accelerators the operating system shows, found without jax: a jax that runs on the
    CPU next to one of these was installed for the wrong platform."""
    found = []
    if shutil.which("nvidia-smi") or Path("/dev/nvidia0").exists():
        found.append("NVIDIA GPU")
    if glob.glob("/dev/accel[0-9]*") or glob.glob("/dev/vfio/[0-9]*"):
        found.append("TPU")
    return found


def _bytes(count: int) -> str:
    return f"{count / 2**30:.1f} GiB"


def _device_facts() -> list[Fact]:
    """Backend, devices, memory and the engine's automatic choices; a problem if jax fails."""
    try:
        import jax

        devices = jax.devices()
    except Exception as error:  # a broken install shows as any exception: report it
        return [Fact("backend", "unavailable", problem=f"jax does not start: {error}")]
    from mer_jax.train import stacking

    backend = jax.default_backend()
    kinds = sorted({device.device_kind for device in devices})
    facts = [Fact("backend", backend), Fact("devices", f"{len(devices)} x {', '.join(kinds)}")]
    memory = devices[0].memory_stats() or {}
    if "bytes_limit" in memory:
        used = memory.get("bytes_in_use", 0)
        facts.append(
            Fact("device memory", f"{_bytes(memory['bytes_limit'])} a device, {_bytes(used)} used")
        )
    else:
        facts.append(Fact("device memory", f"not reported by the {backend} backend"))
    automatic = ml_collections.ConfigDict({"mode": "auto", "loop": "auto"})
    facts.append(Fact("engine.mode=auto", stacking.resolve_mode(automatic)))
    facts.append(Fact("engine.loop=auto", stacking.resolve_loop(automatic)))
    attached = attached_accelerators()
    if backend == "cpu" and attached:
        facts.append(
            Fact(
                "accelerator",
                f"{' and '.join(attached)} attached, but jax uses the CPU",
                warning=(
                    "jax runs on the CPU although a "
                    f"{' and '.join(attached)} is attached: a CPU jaxlib replaced the "
                    "platform's jax. On Colab, restart the runtime after `pip install -e .` "
                    "(never `pip install -r requirements.txt` there); elsewhere "
                    "`pip install -e '.[cuda]'` (NVIDIA) or `pip install -e '.[tpu]'`"
                ),
            )
        )
    return facts


def _data_cache_fact() -> Fact:
    """The default data cache and the complete builds in it (TFDS writes dataset_info.json
    last, so an interrupted build does not count)."""
    from mer_jax.data.dataset import default_data_dir

    root = Path(default_data_dir())
    builds = sorted(
        "/".join(info.parent.relative_to(root).parts)
        for info in root.glob("*/*/*/dataset_info.json")
    )
    if not builds:
        state = "holds no build" if root.is_dir() else "absent"
        return Fact("data cache", f"{root} {state} (datasets are built there on first use)")
    count = f"{len(builds)} build{'s' if len(builds) > 1 else ''}"
    return Fact("data cache", f"{root}: {count} ({', '.join(builds)})")


def _landmark_model_fact() -> Fact:
    from mer_jax.preprocess.face import dlib_landmark_model_path

    try:
        return Fact("dlib landmark model", f"found at {dlib_landmark_model_path()}")
    except FileNotFoundError as error:
        return Fact(
            "dlib landmark model",
            "missing",
            warning=f"{error} (needed to build raw frames without a landmarks sidecar; the "
            "synthetic databases ship their landmarks)",
        )


def gather() -> list[Fact]:
    """Every fact, in printing order."""
    facts = [Fact("python", platform.python_version())]
    facts += [Fact(name, _version(name)) for name in _VERSIONED]
    facts += _device_facts()
    if not any(fact.problem for fact in facts):
        facts += [_data_cache_fact(), _landmark_model_fact()]
    return facts


def verdict(facts: list[Fact]) -> tuple[bool, str]:
    """(whether training can run here, the verdict line)."""
    problems = [fact.problem for fact in facts if fact.problem]
    if problems:
        return False, "NOT READY: " + "; ".join(problems)
    values = {fact.name: fact.value for fact in facts}
    where = (
        f"training runs on {values['devices']} ({values['backend']}, "
        f"{values['engine.mode=auto']} + {values['engine.loop=auto']} by default)"
    )
    warnings = [fact.warning for fact in facts if fact.warning]
    if warnings:
        return True, f"READY WITH WARNINGS: {where}; " + "; ".join(warnings)
    return True, f"READY: {where}"


def report(facts: list[Fact]) -> dict[str, Any]:
    """The facts and the verdict as one JSON-able object."""
    ready, line = verdict(facts)
    return {"facts": {fact.name: fact.value for fact in facts}, "ready": ready, "verdict": line}


def main(argv: list[str] | None = None) -> int:
    """Prints the facts and the verdict; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m mer_jax.doctor", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    facts = gather()
    result = report(facts)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        width = max(len(fact.name) for fact in facts) + 2
        for fact in facts:
            print(f"{fact.name + ':':<{width}}{fact.value}")
        print(result["verdict"])
    return 0 if result["ready"] else 1


if __name__ == "__main__":
    sys.exit(main())
