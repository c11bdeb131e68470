"""compressor search: trials cached under a hash of what they depend on, candidates measured
again side by side, the best per target copied out; the same choice from Ray."""

import json

import pytest

import compressor
from tests.helpers.cli import run_cli, write_model_and_data


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_cnn, digits8):
    return write_model_and_data(tmp_path_factory.mktemp("search"), tiny_cnn, digits8)


def _search(files, out, **options):
    return compressor.search(files / "tiny.keras", ["onnx-int8", "openvino-int8"], data=files / "train.npz",
                             eval_data=files / "test.npz", out_dir=out, max_drop=2.0, rounds=1, **options)


def test_search_chooses_within_budget_and_a_rerun_skips_every_trial(files, tmp_path):
    out = tmp_path / "best"
    record = _search(files, out, recipes=("int8",), objective="size")
    assert [t["cached"] for t in record["trials"]] == [False] and record["trials"][0]["exit_code"] == 0
    assert set(record["chosen"]) == {"onnx-int8", "openvino-int8"}
    for target, pick in record["chosen"].items():
        manifest = json.loads((out / target / "manifest.json").read_text())  # the winner, copied out whole
        assert manifest["target"] == target and manifest["budget"]["max_drop_pp"] == 2.0
        assert pick["drop_pp"] <= 2.0 and pick["recipe"] == "int8"
    assert all(c["remeasured"] for c in record["candidates"] if c["within_budget"])
    assert (out / "report.md").read_text().count("[int8]") == 0  # one run per target: plain names
    saved = json.loads((out / "search.json").read_text())
    assert saved["chosen"].keys() == record["chosen"].keys()

    again = _search(files, out, recipes=("int8",), objective="size")
    assert [t["cached"] for t in again["trials"]] == [True]  # nothing recomputed
    assert {t: c["folder"] for t, c in again["chosen"].items()} == {t: c["folder"] for t, c in record["chosen"].items()}


def test_search_refuses_an_unknown_recipe_before_any_work(files, tmp_path, capsys):
    code, _, err = run_cli(["search", str(files / "tiny.keras"), "-t", "onnx-int8", "--recipe", "prune99",
                            "--data", str(files / "train.npz"), "--eval-data", str(files / "test.npz"),
                            "-o", str(tmp_path / "x")], capsys)
    assert code == 2 and "unknown search recipe 'prune99'" in err
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("a user's file")
    code, _, err = run_cli(["search", str(files / "tiny.keras"), "-t", "onnx-int8", "--data", str(files / "train.npz"),
                            "--eval-data", str(files / "test.npz"), "-o", str(tmp_path / "mine")], capsys)
    assert code == 3 and "holds no search" in err and (tmp_path / "mine" / "notes.txt").read_text() == "a user's file"


@pytest.mark.slow
def test_ray_chooses_what_the_process_pool_chose(files, tmp_path):
    pytest.importorskip("ray")
    options = dict(recipes=("int8", "structured50"), objective="size", jobs=2)
    local = _search(files, tmp_path / "local", **options)
    on_ray = _search(files, tmp_path / "ray", executor="ray", **options)
    assert not any(t["cached"] for t in on_ray["trials"])  # its own trials, run as Ray tasks
    assert {t: c["recipe"] for t, c in on_ray["chosen"].items()} == {t: c["recipe"] for t, c in local["chosen"].items()}
    assert {t: c["bytes"] for t, c in on_ray["chosen"].items()} == {t: c["bytes"] for t, c in local["chosen"].items()}


def test_a_changed_built_in_recipe_is_another_trial(monkeypatch):
    from compressor import recipes
    from compressor.app import search

    config = search.SearchConfig("m.keras", ("onnx-int8",), "train.npz", "test.npz", "out")
    before = search._trial_key(config, "structured25", {"model": "m"})
    assert search._trial_key(config, "structured25", {"model": "m"}) == before  # stable
    changed = {**recipes.BUILTIN["structured25-int8"], "fine_tune": {"epochs": 1}}
    monkeypatch.setitem(recipes.BUILTIN, "structured25-int8", changed)
    assert search._trial_key(config, "structured25", {"model": "m"}) != before
