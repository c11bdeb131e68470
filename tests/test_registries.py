"""Registering is what makes a thing tested: every registered step, runtime and report
format runs through the same template here, on tiny models built in the tests."""

from __future__ import annotations

import json
from importlib import metadata

import numpy as np
import pytest

from benchmarks import reports
from compressor.algorithms import STEPS
from compressor.models import as_source
from compressor.pipeline import compress
from compressor.recipes import from_dict, load_recipe
from targets import PROFILES, export, open_artifact
from targets.runtime import get_runtime, run_batched, runtimes
from tests.helpers.results import results_doc


@pytest.mark.parametrize("step_type", list(STEPS))
def test_every_registered_step_runs_through_the_pipeline(step_type, tiny_cnn, digits8):
    train, test = digits8
    recipe = load_recipe({"name": f"only-{step_type}", "fine_tune": {"epochs": 1},
                          "steps": [{"type": step_type}]})
    assert from_dict(recipe.to_dict()) == recipe  # the config round-trips
    result = compress(tiny_cnn, recipe, data=train, eval_data=test)
    record = result.steps[0]
    assert record.type == step_type and record.details
    json.dumps(result.to_dict())  # the record goes into manifests as it is
    source = as_source(result.model)
    assert [t.shape for t in source.inputs] == [t.shape for t in as_source(tiny_cnn).inputs]
    outputs = source.predict(test.x)
    assert len(outputs) == 1 and outputs[0].shape == (len(test), 10)
    np.testing.assert_allclose(outputs[0].sum(-1), 1.0, atol=1e-4)  # still a softmax classifier
    assert record.accuracy == pytest.approx(np.mean(np.argmax(outputs[0], -1) == test.y))  # the record is the model's


def test_step_positions_come_from_the_registry():
    from compressor.errors import BadInputError

    for step in STEPS.values():
        if step.position == "any":
            continue
        others = [{"type": "prune"}, {"type": "prune_structured"}]
        steps = [{"type": step.type}, *others] if step.position == "last" else [*others, {"type": step.type}]
        with pytest.raises(BadInputError, match=f"must be the {step.position} step"):
            load_recipe({"steps": steps})


@pytest.mark.parametrize("name", sorted(runtimes()))
def test_every_registered_runtime_declares_what_it_needs(name):
    runtime = get_runtime(name)
    for library in runtime.libraries:
        assert metadata.version(library)  # installed: manifests can record it
    for module in runtime.preimport:
        __import__(module)
    assert runtime.export is not None or runtime.runs_sources, f"{name} neither exports nor runs sources"
    if runtime.export is not None:
        assert any(p.runtime == name for p in PROFILES.values()), f"no profile uses runtime {name}"


def test_every_profile_names_a_registered_runtime():
    assert {p.runtime for p in PROFILES.values()} <= set(runtimes())


@pytest.mark.parametrize("name", sorted(n for n, r in runtimes().items() if r.export is not None))
def test_every_exporting_runtime_exports_runs_and_records(name, tiny_cnn, digits8, tmp_path):
    train, test = digits8
    profile = next(p for p in PROFILES.values() if p.runtime == name)
    result = export(tiny_cnn, profile.name, out_dir=tmp_path, calibration=train, validation=test)
    assert result.parity["passed"]
    assert set(get_runtime(name).libraries) | {"numpy"} == set(result.manifest["libraries"])
    runner = open_artifact(result.folder).runner()
    try:
        outputs = run_batched(runner, test.x[:20])
    finally:
        runner.close()
    expected = np.argmax(tiny_cnn.predict(test.x[:20], verbose=0), -1)
    assert np.mean(np.argmax(outputs[0], -1) == expected) >= 0.9


@pytest.mark.parametrize("name", sorted(n for n, r in runtimes().items() if r.runs_sources))
def test_every_baseline_runtime_runs_its_source_format_as_it_is(name, tiny_cnn, digits8, tmp_path):
    from compressor.models import load_source

    formats = {"keras": "model.keras", "onnx": "model.onnx"}
    for source_format in get_runtime(name).runs_sources:
        path = tmp_path / formats[source_format]
        if source_format == "keras":
            tiny_cnn.save(path)
        else:
            from targets.runtimes.onnx_runtime import convert_keras

            convert_keras(tiny_cnn, path)
        source = load_source(path)
        from targets.runtime import baseline_runtime

        assert source.format == source_format and baseline_runtime(source.format).name == name
        runner = get_runtime(name).load(path, threads=1, details={"source": True})
        try:
            got = runner.run(digits8[1].x[:8])[0]
        finally:
            runner.close()
        np.testing.assert_allclose(got, source.predict(digits8[1].x[:8])[0], atol=1e-5)


@pytest.mark.parametrize("fmt", list(reports.WRITERS))
def test_every_report_format_renders_every_row(fmt):
    doc = results_doc()
    text = reports.render(doc, fmt)
    for row in doc["results"]:
        assert row["name"] in text


def test_cli_report_formats_come_from_the_writers_registry():
    from compressor.app.cli import report

    choices = next(p for p in report.params if p.name == "fmt").type.choices
    assert list(choices) == list(reports.WRITERS)


@pytest.mark.parametrize("name", sorted(n for n, r in runtimes().items() if r.mixed is not None))
def test_every_runtime_that_mixes_precisions_keeps_a_named_layer_in_float(name, tiny_cnn, digits8, tmp_path):
    """The accuracy budget's contract: ``nodes`` names the layers it quantizes, ``write`` keeps the
    ones named in float, and what it writes loads and runs with the runner it declares."""
    from compressor import cpu

    train, test = digits8
    runtime = get_runtime(name)
    profile = next(p for p in PROFILES.values() if p.runtime == name and p.precision == "int8"
                   and not p.builtin_int8_only).for_cpu(cpu.HOST)
    mixed = runtime.mixed(as_source(tiny_cnn), profile, train, tmp_path)
    head = [node for node in mixed.nodes if "classes" in node][:1]  # the Dense (ONNX Runtime lists its Softmax too)
    assert head and len(mixed.nodes) >= 2  # the Dense and the Conv (fused with its BatchNorm, named by the runtime)
    outputs = {}
    for kept in ([], head):
        path = tmp_path / f"model-{len(kept)}{mixed.suffix}"
        runner = runtime.load(path, threads=1, details=mixed.write(kept, path) or {})
        outputs[len(kept)] = run_batched(runner, test.x)[0]
        runner.close()
    reference = tiny_cnn.predict(test.x, verbose=0)
    for out in outputs.values():
        assert np.mean(out.argmax(-1) == reference.argmax(-1)) >= 0.9
    assert not np.array_equal(outputs[0], outputs[1])  # the float layer changed what was computed
