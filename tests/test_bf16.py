"""openvino-bf16: an IR computed in bfloat16 on CPUs that have it (AMX, AVX-512 BF16), verified
by running it in bf16, and never offered where it cannot run."""

from __future__ import annotations

import numpy as np
import pytest

from compressor import cpu

BF16_HERE = bool(set(cpu.BF16_FLAGS) & set(cpu.host()["flags"]))


@pytest.mark.skipif(not BF16_HERE, reason="this CPU has no bf16 (AMX or AVX-512 BF16)")
def test_bf16_runs_in_bf16_here_and_keeps_the_top1(tiny_cnn, digits8, tmp_path):
    from targets import export, open_artifact
    from targets.runtime import describe_artifact

    train, test = digits8
    fp32 = export(tiny_cnn, "openvino-fp32", out_dir=tmp_path, validation=test)
    bf16 = export(tiny_cnn, "openvino-bf16", out_dir=tmp_path, validation=test)
    assert bf16.manifest["details"]["compile_properties"]["INFERENCE_PRECISION_HINT"] == "bf16"
    assert bf16.manifest["parity"]["passed"] and bf16.manifest["parity"]["agreement"] >= 0.99
    kernels = describe_artifact(bf16.folder)["cpu_kernels_here"]
    assert any(kind.endswith("bf16") for kind in kernels), kernels  # the plugin computes in bf16 here
    assert not any(kind.endswith("bf16") for kind in describe_artifact(fp32.folder)["cpu_kernels_here"])
    x = test.x[:64]
    ran = [open_artifact(r.folder).runner().run(x)[0] for r in (fp32, bf16)]
    difference = float(np.max(np.abs(ran[0] - ran[1])))
    assert 1e-5 < difference < 0.1  # bf16 rounding shows, within what its parity rule allows
    assert np.mean(ran[0].argmax(-1) == ran[1].argmax(-1)) >= 0.99


def test_bf16_is_not_offered_where_the_cpu_cannot_run_it(tiny_cnn, digits8, tmp_path, monkeypatch):
    from compressor.errors import UnsupportedModelError
    from targets import export, profiles_for

    facts = {**cpu.host(), "flags": [f for f in cpu.host()["flags"] if f not in cpu.BF16_FLAGS]}
    monkeypatch.setattr(cpu, "host", lambda: facts)
    assert "openvino-bf16" not in profiles_for(tiny_cnn) and "openvino-fp32" in profiles_for(tiny_cnn)
    with pytest.raises(UnsupportedModelError, match="this CPU has none of avx512_bf16, amx_bf16"):
        export(tiny_cnn, "openvino-bf16", out_dir=tmp_path, validation=digits8[1])
    assert not any(tmp_path.iterdir())
