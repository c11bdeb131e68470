"""Named microcontroller budgets: does the artifact fit the device it is meant for?

RAM is compared with the tensor arena TFLite Micro measured for the model (the
interpreter's own code and the application's buffers come on top); flash with the model
bytes (the firmware's code comes on top). A device is a record here, like a profile.
"""

from __future__ import annotations

from dataclasses import dataclass

from compressor.errors import BadInputError, UnsupportedModelError

KIB = 1024


@dataclass(frozen=True)
class Device:
    name: str
    description: str
    ram_bytes: int
    flash_bytes: int

    def why_not(self, arena_bytes: int, model_bytes: int) -> str | None:
        """Why a model with this arena and size does not fit, or None if it does."""
        over = [f"its tensor arena of {arena_bytes / KIB:,.1f} KiB exceeds the {self.ram_bytes // KIB} KiB of RAM"
                ] if arena_bytes > self.ram_bytes else []
        over += [f"its {model_bytes / KIB:,.1f} KiB exceed the {self.flash_bytes // KIB} KiB of flash"
                 ] if model_bytes > self.flash_bytes else []
        return f"does not fit {self.name} ({self.description}): {' and '.join(over)}" if over else None


DEVICES: dict[str, Device] = {d.name: d for d in (
    Device("cortex-m4", "Cortex-M4 class, e.g. STM32F4: 256 KiB RAM, 1 MiB flash", 256 * KIB, 1024 * KIB),
    Device("cortex-m7", "Cortex-M7 class, e.g. STM32F7: 512 KiB RAM, 2 MiB flash", 512 * KIB, 2048 * KIB),
)}


def get_device(name: str) -> Device:
    if name not in DEVICES:
        raise BadInputError(f"unknown device '{name}' (valid: {', '.join(DEVICES)})")
    return DEVICES[name]


def fit_table(arena_bytes: int, model_bytes: int) -> dict[str, dict]:
    """For every named device: RAM and flash used against its budget, and whether it fits."""
    return {d.name: {"ram_bytes": d.ram_bytes, "flash_bytes": d.flash_bytes, "arena_bytes": arena_bytes,
                     "model_bytes": model_bytes, "fits": d.why_not(arena_bytes, model_bytes) is None}
            for d in DEVICES.values()}


def check_fits(device: str, details: dict, target: str) -> None:
    """Refuse an artifact that does not fit ``device``; targets without a measured arena are not budgeted."""
    fit = (details.get("device_fit") or {}).get(device)
    if fit is None:
        return
    reason = get_device(device).why_not(fit["arena_bytes"], fit["model_bytes"])
    if reason:
        raise UnsupportedModelError(f"{target}: the model {reason}; prune or distil it (e.g. -r structured50-int8) "
                                    "or pick a larger device")
