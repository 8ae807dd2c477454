"""The job spec: every kind of bad value is an error naming its key path."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from autoprune.errors import SpecError
from autoprune.spec import JobSpec


@pytest.fixture()
def example(repo_root: Path, tmp_path: Path) -> dict:
    data = yaml.safe_load((repo_root / "examples" / "sst2-minilm.yaml").read_text())
    # Bad-value checks must not depend on ../shared standing beside this checkout.
    sst2 = tmp_path / "SST-2"
    sst2.mkdir()
    for name in ("train.tsv", "dev.tsv"):
        (sst2 / name).write_text("sentence\tlabel\na good film \t1\n")
    data["task"]["data_dir"] = str(sst2)
    return data


@pytest.fixture()
def base_dir(repo_root: Path) -> Path:
    return repo_root / "examples"


def test_example_spec_loads_and_is_frozen(repo_root: Path, glue_dir: Path) -> None:
    spec = JobSpec.load(repo_root / "examples" / "sst2-minilm.yaml")
    assert spec.task.data_dir == (glue_dir / "SST-2").resolve()
    assert spec.space.name == "bert-structured.yaml" and spec.space.is_file()
    assert spec.latency.budget_ratio == 0.5
    with pytest.raises(Exception):
        spec.controller.evaluations = 3  # type: ignore[misc]
    again = JobSpec.from_json(spec.to_json())
    assert again == spec


def test_cola_example_spec_trains_its_teacher_on_synthetic_acceptability_first(
        repo_root: Path, glue_dir: Path) -> None:
    from autoprune.estimate import TeacherRecipe

    spec = JobSpec.load(repo_root / "examples" / "cola-minilm.yaml")
    assert spec.task.data_dir == (glue_dir / "CoLA").resolve()
    recipe = TeacherRecipe.from_spec(spec.estimate, spec.task)
    assert recipe.synthetic_steps == 1000
    assert recipe.synthetic_text == (str((glue_dir / "MRPC").resolve()),)


def _mutate(data: dict, path: str, value) -> dict:
    data = copy.deepcopy(data)
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[key]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return data


_DELETE = object()


@pytest.mark.parametrize(
    "path, value, message",
    [
        ("controller.evaluations", 0, "controller.evaluations: must be >= 1"),
        ("controller.evaluations", "many", "controller.evaluations: input should be a valid integer"),
        ("controller.population", 1, "controller.population: must be >= 2"),
        ("colour", "red", "colour: unknown key"),
        ("task.colour", "red", "task.colour: unknown key"),
        ("task", _DELETE, "task: required"),
        ("task.data_dir", "no/such/dir", "task.data_dir: no such path"),
        ("latency.budget_ratio", 1.5, "latency.budget_ratio: must be <= 1"),
        ("latency.budget_ms", 3.0, "latency: give exactly one of budget_ms, budget_ratio"),
        ("latency.margin", 0.5, "latency.margin: must be < 0.5"),
        ("latency.margin", -0.1, "latency.margin: must be >= 0"),
        ("latency.margin", "some", "latency.margin: must be a number in [0, 0.5) or 'auto' (got 'some')"),
        ("latency.backend", "tensorrt", "latency.backend"),
        ("objective.kind", "fastest", "objective.kind"),
        ("objective.w", 0.5, "objective.w: must be <= 0"),
        ("estimate.rungs", [10, 5], "estimate: rungs: must be strictly increasing"),
        ("estimate.lr", -1, "estimate.lr: must be > 0"),
        ("estimate.teacher_calibrate", 0.5, "estimate.teacher_calibrate: must be < 0.5"),
        ("estimate.teacher_synthetic_steps", 0, "estimate.teacher_synthetic_steps: must be >= 1"),
        ("estimate.teacher_synthetic_text", ["no/such.txt"],
         "estimate.teacher_synthetic_text: no such path"),
        ("estimate.teacher_synthetic_text", ["."],
         "estimate: teacher_synthetic_text: needs teacher_synthetic_steps"),
        ("executor.kind", "slurm", "executor.kind"),
        ("executor.workers", 0, "executor.workers: must be >= 1"),
        ("space", "no-such-space", "space: no such file or built-in space"),
    ],
)
def test_bad_values_name_the_key(example: dict, base_dir: Path, path, value, message) -> None:
    with pytest.raises(SpecError) as info:
        JobSpec.from_dict(_mutate(example, path, value), base_dir=base_dir, source="job.yaml")
    text = str(info.value)
    assert text.startswith("job.yaml: ") and message in text, text
    assert "\n" not in text


@pytest.mark.parametrize("task, kind", [("stsb", "a regression"), ("mnli", "a 3-way")])
def test_a_calibrated_teacher_needs_a_binary_task(example: dict, base_dir: Path, task: str,
                                                  kind: str) -> None:
    data = _mutate(example, "estimate.teacher_calibrate", 0.1)
    assert JobSpec.from_dict(data, base_dir=base_dir).estimate.teacher_calibrate == 0.1
    with pytest.raises(SpecError) as info:
        JobSpec.from_dict(_mutate(data, "task.name", task), base_dir=base_dir, source="job.yaml")
    assert str(info.value) == (f"job.yaml: estimate.teacher_calibrate: task '{task}' is {kind} "
                               "task; a decision threshold is calibrated only for two classes")


def test_a_synthetic_stage_refuses_sentence_pairs_when_the_spec_is_read(
        example: dict, base_dir: Path) -> None:
    # Before any latency profile or teacher is spent on the job.
    data = _mutate(_mutate(example, "estimate.teacher_synthetic_steps", 500), "task.name", "mrpc")
    with pytest.raises(SpecError) as info:
        JobSpec.from_dict(data, base_dir=base_dir, source="job.yaml")
    assert str(info.value) == ("job.yaml: estimate.teacher_synthetic_steps: task 'mrpc' has "
                               "sentence pairs; synthetic acceptability is for single sentences")


@pytest.mark.parametrize("task, kind", [("stsb", "a regression"), ("mnli", "a 3-way")])
def test_a_synthetic_stage_needs_a_binary_task(example: dict, base_dir: Path, task: str,
                                               kind: str) -> None:
    data = _mutate(example, "estimate.teacher_synthetic_steps", 500)
    data["estimate"]["teacher_synthetic_text"] = ["."]
    estimate = JobSpec.from_dict(data, base_dir=base_dir).estimate
    assert estimate.teacher_synthetic_text == (base_dir.resolve(),)
    with pytest.raises(SpecError) as info:
        JobSpec.from_dict(_mutate(data, "task.name", task), base_dir=base_dir, source="job.yaml")
    assert str(info.value) == (f"job.yaml: estimate.teacher_synthetic_steps: task '{task}' is "
                               f"{kind} task; synthetic acceptability needs two classes "
                               "(class 1: acceptable)")


def test_missing_latency_model_needs_profile(example: dict, base_dir: Path) -> None:
    data = _mutate(example, "latency.profile", False)
    data["latency"]["model"] = "missing.json"
    with pytest.raises(SpecError, match="latency: model: no such file"):
        JobSpec.from_dict(data, base_dir=base_dir)


def test_not_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        JobSpec.load(bad)
    with pytest.raises(SpecError, match="no such spec file"):
        JobSpec.load(tmp_path / "absent.yaml")
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(SpecError, match="expected a mapping"):
        JobSpec.load(listy)
