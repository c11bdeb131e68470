"""The roofline of a measurement: how much of this host's compute an artifact used.

Achieved throughput is 2 x MACs x batch / p50 (one multiply-accumulate = two operations);
the ceiling is the host's peak for the precision the artifact computes in
(:func:`compressor.cpu.peak`: fp32 FMA lanes x FMA units x clock, x the class's int8 multiplier
for integer kernels; the AMX tiles' peak for the runtimes that run that precision on them), on as
many cores as the run used threads. A low fraction says the
artifact is bound by something other than arithmetic: depthwise layers, memory bandwidth,
per-op overhead on a small model.
"""

from __future__ import annotations

from compressor.cpu import peak

INTEGER = frozenset({"int8", "dynamic-int8", "int16x8"})  # computed by integer kernels: the int8 ceiling


def ceiling(machine: dict, threads: int) -> dict:
    """The host's peaks for ``threads`` threads (at most its cores), with the formula."""
    if "vector_bits" not in machine or "cpu_class" not in machine:
        return {"fp32_gflops": None, "int8_gops": None, "formula": "CPU facts not recorded: no peak"}
    return peak(machine, cores=max(1, min(threads, machine.get("cores") or 1)))


def ceiling_for(precision: str, roof: dict, amx: tuple = ()) -> tuple[str, float | None]:
    """The ceiling an artifact computing in ``precision`` is held to: the AMX tiles' where its
    runtime runs that precision on them (``amx``: ``Runtime.amx``) and the host has them, else
    the vector units' (int8, bf16 with AVX-512 BF16, fp32)."""
    kind = "int8" if precision in INTEGER else "bf16" if precision == "bf16" else "fp32"
    amx_key = {"int8": "amx_int8_gops", "bf16": "amx_bf16_gflops"}.get(kind)
    if amx_key and kind in amx and roof.get(amx_key):
        return f"{kind} (AMX)", roof[amx_key]
    if kind == "bf16" and roof.get("bf16_gflops"):
        return "bf16", roof["bf16_gflops"]
    return ("int8", roof.get("int8_gops")) if kind == "int8" else ("fp32", roof.get("fp32_gflops"))


def point(macs: int | None, precision: str, p50_ms: float, batch: int, roof: dict, amx: tuple = ()) -> dict | None:
    """Achieved GOP/s of one artifact and its fraction of the ceiling for its precision."""
    if not macs or not p50_ms:
        return None
    achieved = 2 * macs * batch / (p50_ms / 1000) / 1e9
    ceiling, top = ceiling_for(precision, roof, amx)
    return {"macs": int(macs), "gops": round(achieved, 2), "peak_gops": top, "ceiling": ceiling,
            "fraction": round(achieved / top, 4) if top else None}
