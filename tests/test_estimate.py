"""Teacher, importance, cheap fine-tune and proxy, end to end on a tiny random BERT."""

from __future__ import annotations

import copy
import json
import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from tinybert import sentiment_examples, write_model

from autoprune.data import GLUE_TASKS, Split, TaskData
from autoprune.errors import ModelError
from autoprune.estimate import (
    CheapFinetune,
    CheckpointError,
    DiskCache,
    EstimateResult,
    FinalPhase,
    FinetuneRecipe,
    NullEstimator,
    ProxyEstimator,
    TeacherRecipe,
    layer_map,
    prepare_importance,
    prepare_teacher,
)
from autoprune.estimate.head import refit_head
from autoprune.estimate.training import model_inputs
from autoprune.space import Architecture, LayerConfig
from autoprune.spec import EstimateSpec


def sentiment_split(n: int, seed: int) -> Split:
    """Filler words around one sentiment word: learnable in a few dozen steps."""
    examples = sentiment_examples(n, seed)
    return Split(tuple((text,) for text, _ in examples),
                 np.asarray([label for _, label in examples], dtype=np.int64), f"synthetic-{seed}")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("estimate")
    model_dir = write_model(root / "model")
    data = TaskData(GLUE_TASKS["sst2"], sentiment_split(400, 0), sentiment_split(100, 1))
    cache = DiskCache(root / "cache")
    recipe = TeacherRecipe(steps=60, lr=2e-3, max_seq_len=32, freeze_embeddings=False)
    teacher = prepare_teacher(str(model_dir), data, recipe, seed=0, cache=cache, threads=1,
                              progress=False)
    importance, _ = prepare_importance(teacher, data, batches=4, cache=cache, threads=1)
    return {"root": root, "model": model_dir, "data": data, "cache": cache, "recipe": recipe,
            "teacher": teacher, "importance": importance}


HALF = Architecture((LayerConfig(heads=2, ffn=0.5), LayerConfig.dropped()))
SPARSE_INT8 = Architecture((LayerConfig(heads=4, ffn=0.5, sparsity=0.5, pattern="unstructured",
                                        bits=8), LayerConfig(heads=2, ffn=1.0, pattern="2:4")))
DENSE = Architecture.dense(2, 4)


def test_teacher_learns_and_records_its_metric(tiny: dict) -> None:
    teacher = tiny["teacher"]
    assert not teacher.cached
    assert teacher.steps == 60 and teacher.seconds > 0
    assert teacher.metric == teacher.metrics["accuracy"] >= 0.9  # the task is separable
    assert (teacher.directory / "teacher.json").is_file()


def test_second_call_is_a_cache_hit(tiny: dict) -> None:
    again = prepare_teacher(str(tiny["model"]), tiny["data"], tiny["recipe"], seed=0,
                            cache=tiny["cache"], progress=False)
    assert again.cached and again.directory == tiny["teacher"].directory
    assert again.metrics == tiny["teacher"].metrics
    for a, b in zip(again.model.parameters(), tiny["teacher"].model.parameters()):
        assert torch.equal(a, b)
    other_seed = DiskCache(tiny["cache"].root)
    assert not other_seed.has("teachers", "0" * 64)
    scores, _ = prepare_importance(tiny["teacher"], tiny["data"], batches=4, cache=tiny["cache"])
    assert torch.equal(scores.heads, tiny["importance"].heads)
    assert len(list((tiny["cache"].root / "importance").glob("*/importance.safetensors"))) == 1


def test_weight_averaging_keeps_the_mean_of_the_late_weights(tiny: dict) -> None:
    from dataclasses import replace

    from autoprune.data import encode
    from autoprune.estimate.teacher import fine_tune
    from autoprune.models import load_base, load_tokenizer

    recipe = replace(tiny["recipe"], average_from=0.5)
    train = encode(tiny["data"].train, load_tokenizer(str(tiny["model"])), recipe.max_seq_len)
    seen: list[dict[str, torch.Tensor]] = []
    averaged_seen: list[int] = []

    def on_step(step: int, model: torch.nn.Module, averaged: torch.nn.Module | None) -> None:
        seen.append({k: v.detach().clone() for k, v in model.named_parameters()})
        averaged_seen.append(step if averaged is not None else 0)

    model = load_base(str(tiny["model"]), 2)
    fine_tune(model, train, recipe, 10, seed=0, progress=False, on_step=on_step)
    # Steps 6..10 (the second half) are averaged; the running mean exists from step 6 on.
    assert averaged_seen == [0] * 5 + [6, 7, 8, 9, 10]
    for name, value in model.named_parameters():
        expected = torch.stack([weights[name] for weights in seen[5:]]).mean(0)
        torch.testing.assert_close(value.detach(), expected, rtol=1e-5, atol=1e-6)
    assert not torch.equal(dict(model.named_parameters())["classifier.weight"],
                           seen[-1]["classifier.weight"])  # not just the last step
    assert not model.training


def test_later_recipe_fields_enter_the_teacher_key_only_when_set(tiny: dict) -> None:
    from dataclasses import asdict, replace

    from autoprune.estimate.cache import content_key
    from autoprune.estimate.teacher import teacher_key

    recipe, data = tiny["recipe"], tiny["data"]
    later = ("average_from", "calibrate", "synthetic_steps", "synthetic_text")
    v1_fields = {k: v for k, v in asdict(recipe).items() if k not in later}
    # Teachers cached before the field existed keep their keys.
    assert teacher_key("m", data, recipe, 0) == content_key(
        {"kind": "teacher", "model": "m", "data": data.fingerprint(), "recipe": v1_fields,
         "seed": 0, "version": 1})
    assert teacher_key("m", data, replace(recipe, average_from=0.5), 0) != teacher_key(
        "m", data, recipe, 0)
    assert teacher_key("m", data, replace(recipe, calibrate=0.1), 0) != teacher_key(
        "m", data, recipe, 0)
    synthetic = replace(recipe, synthetic_steps=10)
    assert teacher_key("m", data, synthetic, 0) != teacher_key("m", data, recipe, 0)
    # The extra sentences enter by content; their paths do not.
    assert teacher_key("m", data, replace(synthetic, synthetic_text=("a.txt",)), 0) == (
        teacher_key("m", data, synthetic, 0))
    assert teacher_key("m", data, synthetic, 0, ["A sentence."]) != (
        teacher_key("m", data, synthetic, 0))
    with pytest.raises(ValueError, match="average_from"):
        TeacherRecipe(average_from=1.0)
    with pytest.raises(ValueError, match="calibrate"):
        TeacherRecipe(calibrate=0.5)


def test_best_offset_moves_the_threshold_only_when_the_metric_gains() -> None:
    from autoprune.estimate.calibrate import best_offset, calibrate

    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    # Two negatives score between 0 and 1, every positive above 1: only a threshold in
    # (0.8, 1.2) separates the classes.
    margins = np.array([-2.0, -1.0, 0.5, 0.8, 1.2, 1.5, 2.0, 3.0])
    offset, value = best_offset(margins, labels, "matthews")
    assert 0.8 < offset < 1.2 and value == pytest.approx(1.0)
    calibration = calibrate(np.stack([np.zeros(8), margins], axis=1), labels, "matthews")
    assert calibration.holdout_argmax == pytest.approx(0.5773503, abs=1e-6)  # 2 false positives
    assert calibration.holdout_calibrated == pytest.approx(1.0)
    assert calibration.holdout_size == 8
    # Argmax already separates them: the threshold stays at 0 rather than any other midpoint.
    assert best_offset(margins - 1.0, labels, "f1") == (0.0, 1.0)


def test_holdout_split_is_seeded_and_disjoint(tiny: dict) -> None:
    from autoprune.errors import SpecError
    from autoprune.estimate.calibrate import split_holdout

    train = tiny["data"].train
    kept, held = split_holdout(train, 0.1, seed=3)
    assert (len(kept), len(held)) == (360, 40)
    assert sorted(kept.texts + held.texts) == sorted(train.texts)
    again_kept, again_held = split_holdout(train, 0.1, seed=3)
    assert again_held.texts == held.texts and split_holdout(train, 0.1, 4)[1].texts != held.texts
    with pytest.raises(SpecError, match="leaves none to train on"):
        split_holdout(train.subset([0]), 0.4, seed=0)


def test_calibrated_teacher_predicts_with_its_held_out_threshold(tiny: dict) -> None:
    from dataclasses import replace

    from autoprune.data import encode
    from autoprune.estimate.calibrate import split_holdout
    from autoprune.estimate.training import evaluate

    recipe = replace(tiny["recipe"], calibrate=0.1)
    teacher = prepare_teacher(str(tiny["model"]), tiny["data"], recipe, seed=0,
                              cache=tiny["cache"], threads=1, progress=False)
    calibration = teacher.calibration
    assert calibration is not None and calibration["holdout_size"] == 40
    assert calibration["metric"] == "accuracy"
    assert calibration["holdout_calibrated"] >= calibration["holdout_argmax"]
    assert 0.0 <= calibration["dev_argmax"] <= 1.0
    assert teacher.key != tiny["teacher"].key
    # The threshold is in the saved weights: the loaded teacher's plain argmax on the
    # held-out part scores what the calibration chose.
    _, held = split_holdout(tiny["data"].train, 0.1, seed=0)
    scored = evaluate(teacher.model, tiny["data"].task, encode(held, teacher.tokenizer, 128))
    assert scored["accuracy"] == pytest.approx(calibration["holdout_calibrated"], abs=1e-6)
    assert prepare_teacher(str(tiny["model"]), tiny["data"], recipe, seed=0,
                           cache=tiny["cache"], progress=False).calibration == calibration


def test_synthetic_stage_comes_first_and_enters_the_key(tiny: dict, tmp_path: Path) -> None:
    from dataclasses import replace

    recipe = replace(tiny["recipe"], synthetic_steps=20)
    teacher = prepare_teacher(str(tiny["model"]), tiny["data"], recipe, seed=0,
                              cache=tiny["cache"], threads=1, progress=False)
    synthetic = teacher.synthetic
    assert synthetic == json.loads((teacher.directory / "teacher.json").read_text())["synthetic"]
    positives = int(tiny["data"].train.labels.sum())
    assert synthetic["steps"] == 20 and synthetic["extra_sentences"] == 0
    assert 0 < synthetic["examples"] <= 2 * positives and synthetic["examples"] % 2 == 0
    assert 0.0 <= synthetic["dev"]["accuracy"] <= 1.0
    assert teacher.steps == tiny["teacher"].steps and teacher.key != tiny["teacher"].key
    # The stage trained the model: its weights differ from the plain teacher's.
    assert not torch.equal(teacher.model.classifier.weight, tiny["teacher"].model.classifier.weight)
    # Extra sentences enter the key by content: the same lines in another file hit the cache.
    lines = ["A filler sentence stays here.", "Another filler sentence stays there."]
    for name in ("a.txt", "b.txt"):
        (tmp_path / name).write_text("\n".join(lines))
    keyed = [prepare_teacher(str(tiny["model"]), tiny["data"],
                             replace(recipe, synthetic_text=(str(tmp_path / name),)), seed=0,
                             cache=tiny["cache"], threads=1, progress=False)
             for name in ("a.txt", "b.txt")]
    assert keyed[0].key == keyed[1].key != teacher.key
    assert not keyed[0].cached and keyed[1].cached
    assert keyed[1].synthetic is not None and keyed[1].synthetic["extra_sentences"] == 2
    assert tiny["teacher"].synthetic is None
    with pytest.raises(ValueError, match="synthetic_text: needs synthetic_steps"):
        replace(tiny["recipe"], synthetic_text=("a.txt",))


@pytest.mark.parametrize("task, message", [
    ("stsb", "is a regression task; synthetic acceptability needs two classes"),
    ("mnli", "is a 3-way task"),
    ("mrpc", "has sentence pairs; synthetic acceptability is for single sentences")])
def test_synthetic_stage_refuses_other_tasks(tiny: dict, task: str, message: str) -> None:
    from autoprune.errors import SpecError
    from autoprune.estimate.teacher import check_synthetic

    labels = np.zeros(2, dtype=np.float32 if task == "stsb" else np.int64)
    split = Split((("a b c", "d e f"),) * 2 if task == "mrpc" else (("a b c",),) * 2, labels)
    with pytest.raises(SpecError, match=rf"teacher_synthetic_steps: task '{task}' {message}") as info:
        check_synthetic(TaskData(GLUE_TASKS[task], split, split))
    assert "\n" not in str(info.value)
    check_synthetic(TaskData(GLUE_TASKS["cola"], *(Split((("a b c",),) * 2, labels),) * 2))


@pytest.mark.parametrize("task", ["stsb", "mnli"])
def test_calibration_needs_two_classes(tiny: dict, task: str) -> None:
    from autoprune.errors import SpecError
    from autoprune.estimate.calibrate import check_calibratable

    with pytest.raises(SpecError, match=rf"teacher_calibrate: task '{task}' is .* task") as info:
        check_calibratable(GLUE_TASKS[task], 0.1)
    assert "\n" not in str(info.value)
    check_calibratable(GLUE_TASKS[task], None)
    with pytest.raises(ValueError, match="teacher_calibrate"):
        EstimateSpec(teacher_calibrate=0.5)


def test_cheap_finetune_end_to_end(tiny: dict) -> None:
    recipe = FinetuneRecipe(lr=1e-3, max_seq_len=32, eval_samples=60, hidden_weight=1.0)
    estimator = CheapFinetune(tiny["teacher"], tiny["data"], tiny["importance"], recipe,
                              checkpoint_dir=tiny["root"] / "ckpt", threads=1)
    result = estimator.evaluate(SPARSE_INT8, steps=8)
    assert result.metric_name == "accuracy" and 0.0 <= result.value <= 1.0
    assert (result.steps, result.samples) == (8, 8 * 32)
    assert result.seconds > 0 and result.details["steps_run"] == 8
    assert result.details["eval_samples"] == 60
    assert result.checkpoint is not None and result.checkpoint.is_file()
    assert tiny["teacher"].model.bert.encoder.layer[0].attention.self.query.out_features == 32


def test_resuming_with_dropout_continues_its_random_stream(tiny: dict) -> None:
    """The tiny teacher has no dropout; MiniLM has 0.1, and a rung that replayed the dropout
    stream from the seed would not be the straight run."""
    model = copy.deepcopy(tiny["teacher"].model)
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.3
    teacher = dataclasses.replace(tiny["teacher"], model=model)
    recipe = FinetuneRecipe(lr=1e-3, max_seq_len=32, eval_samples=60, hidden_weight=0.0)
    estimator = CheapFinetune(teacher, tiny["data"], tiny["importance"], recipe,
                              checkpoint_dir=tiny["root"] / "dropout-rungs", threads=1)
    low = estimator.evaluate(HALF, steps=3)
    state = torch.load(low.checkpoint, weights_only=True)
    resumed = torch.load(estimator.evaluate(HALF, steps=6, resume_from=low.checkpoint).checkpoint,
                         weights_only=True)["model"]
    state.pop("rng", None)  # as a checkpoint written before the random state was saved
    seedless = tiny["root"] / "seedless.pt"
    torch.save(state, seedless)
    replayed = torch.load(estimator.evaluate(HALF, steps=6, resume_from=seedless).checkpoint,
                          weights_only=True)["model"]
    straight = torch.load(estimator.evaluate(HALF, steps=6).checkpoint, weights_only=True)["model"]
    assert all(torch.allclose(resumed[k].float(), straight[k].float(), atol=1e-6) for k in straight)
    # The control: with the stream replayed from the seed, the same six steps end elsewhere.
    assert not all(torch.allclose(replayed[k].float(), straight[k].float(), atol=1e-6)
                   for k in straight)


def test_resuming_a_lower_rung_equals_training_straight_through(tiny: dict) -> None:
    recipe = FinetuneRecipe(lr=1e-3, max_seq_len=32, eval_samples=60, hidden_weight=0.0)
    estimator = CheapFinetune(tiny["teacher"], tiny["data"], tiny["importance"], recipe,
                              checkpoint_dir=tiny["root"] / "rungs", threads=1)
    low = estimator.evaluate(HALF, steps=4)
    resumed = estimator.evaluate(HALF, steps=10, resume_from=low.checkpoint)
    straight = estimator.evaluate(HALF, steps=10)
    assert resumed.details["steps_run"] == 6 and resumed.steps == 10
    a = torch.load(resumed.checkpoint, weights_only=True)["model"]
    b = torch.load(straight.checkpoint, weights_only=True)["model"]
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-5) for k in a)
    assert resumed.value == pytest.approx(straight.value)
    with pytest.raises(CheckpointError, match="another architecture"):
        estimator.evaluate(DENSE, steps=10, resume_from=low.checkpoint)
    with pytest.raises(CheckpointError, match="past"):
        estimator.evaluate(HALF, steps=2, resume_from=resumed.checkpoint)


def test_final_phase_decays_the_rate_to_zero_and_distils_hidden_states(
    tiny: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = FinetuneRecipe(lr=1e-3, max_seq_len=32, eval_samples=60, hidden_weight=0.0,
                            warmup_steps=1)
    estimator = CheapFinetune(tiny["teacher"], tiny["data"], tiny["importance"], recipe,
                              checkpoint_dir=tiny["root"] / "final", threads=1)
    low = estimator.evaluate(HALF, steps=4)
    weights: list[float | None] = []
    rates: list[float] = []
    loss = estimator.loss

    def spy(student: torch.nn.Module, step: int, arch: Architecture,
            hidden_weight: float | None = None, final: FinalPhase | None = None
            ) -> torch.Tensor:
        weights.append(final.hidden_weight if final is not None else hidden_weight)
        rates.append(optimizer_rate())
        return loss(student, step, arch, hidden_weight, final)

    optimizers: list[torch.optim.Optimizer] = []
    make = estimator._optimizer

    def keep(student: torch.nn.Module) -> tuple[torch.optim.Optimizer, object]:
        optimizer, schedule = make(student)
        optimizers.append(optimizer)
        return optimizer, schedule

    def optimizer_rate() -> float:
        return float(optimizers[-1].param_groups[0]["lr"])

    monkeypatch.setattr(estimator, "loss", spy)
    monkeypatch.setattr(estimator, "_optimizer", keep)
    _, plain = estimator.train(HALF, 10, resume_from=low.checkpoint)
    assert weights == [None] * 6 and rates == [pytest.approx(1e-3)] * 6  # the search's rate
    assert last_rate(plain) == pytest.approx(1e-3)
    weights.clear()
    rates.clear()
    _, final = estimator.train(HALF, 10, resume_from=low.checkpoint,
                               final=FinalPhase(lr=4e-3, hidden_weight=0.5))
    assert weights == [0.5] * 6
    assert rates == pytest.approx([4e-3 * (1 - k / 6) for k in range(6)])  # linear, to 0
    assert last_rate(final) == pytest.approx(0.0)
    # Named apart from the search's checkpoint of the same step, which it must not overwrite.
    assert final.checkpoint != plain.checkpoint and last_rate(plain) == pytest.approx(1e-3)


def test_a_stage_trained_only_for_its_checkpoint_skips_the_dev_set(tiny: dict) -> None:
    recipe = FinetuneRecipe(lr=1e-3, max_seq_len=32, eval_samples=60)
    estimator = CheapFinetune(tiny["teacher"], tiny["data"], tiny["importance"], recipe,
                              checkpoint_dir=tiny["root"] / "unscored", threads=1)
    _, unscored = estimator.train(HALF, 4, score=False)
    assert math.isnan(unscored.value) and unscored.details["eval_samples"] == 0
    assert unscored.checkpoint is not None
    resumed = estimator.evaluate(HALF, 6, resume_from=unscored.checkpoint)
    assert 0.0 <= resumed.value <= 1.0


def last_rate(result: EstimateResult) -> float:
    """The learning rate a result's checkpoint would resume with."""
    assert result.checkpoint is not None
    state = torch.load(result.checkpoint, weights_only=True)
    return float(state["optimizer"]["param_groups"][0]["lr"])


def test_distillation_loss_decreases_on_a_fixed_batch(tiny: dict) -> None:
    recipe = FinetuneRecipe(lr=3e-3, max_seq_len=32, hidden_weight=1.0, warmup_steps=1)
    estimator = CheapFinetune(tiny["teacher"], tiny["data"], tiny["importance"], recipe, threads=1)
    student = estimator.build(HALF)
    optimizer = torch.optim.Adam([p for p in student.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(15):
        loss = estimator.loss(student, 0, HALF)  # always batch 0
        losses.append(loss.item())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert losses[-1] < 0.5 * losses[0]


def test_final_phase_adds_the_gold_labels_loss_with_its_weight(tiny: dict) -> None:
    recipe = FinetuneRecipe(max_seq_len=32, hidden_weight=0.0)
    estimator = CheapFinetune(tiny["teacher"], tiny["data"], tiny["importance"], recipe, threads=1)
    student = estimator.build(HALF).eval()  # no dropout: both losses see the same logits
    with torch.no_grad():
        plain = estimator.loss(student, 0, HALF, final=FinalPhase(hidden_weight=0.0))
        labelled = estimator.loss(student, 0, HALF,
                                  final=FinalPhase(hidden_weight=0.0, label_weight=0.5))
        batch = estimator.shared.batch(0)
        gold = torch.nn.functional.cross_entropy(student(**model_inputs(batch)).logits,
                                                 batch["labels"])
    assert gold > 0
    assert labelled.item() == pytest.approx(plain.item() + 0.5 * gold.item(), rel=1e-5)


def test_last_to_last_maps_the_last_kept_layer_to_the_teachers_last() -> None:
    shallow = Architecture((LayerConfig(heads=2, ffn=0.5), LayerConfig(heads=2, ffn=0.5),
                            LayerConfig.dropped()))
    assert layer_map(shallow) == [(1, 1), (2, 2)]
    assert layer_map(shallow, last_to_last=True) == [(1, 1), (2, 3)]
    assert layer_map(DENSE, last_to_last=True) == layer_map(DENSE)  # nothing dropped


def _logit_error(estimator: CheapFinetune, student: torch.nn.Module, batches: int) -> float:
    student.eval()
    errors = []
    with torch.no_grad():
        for step in range(batches):
            batch = estimator.shared.batch(step)
            logits = student(**model_inputs(batch)).logits
            errors.append((logits - estimator._teacher_outputs(step, batch, False)[0]).pow(2).mean().item())
    return sum(errors) / len(errors)


def test_refit_head_fits_the_teacher_logits_on_a_shallower_body(tiny: dict) -> None:
    recipe = FinetuneRecipe(max_seq_len=32, refit_head=False, head_probe_batches=4)
    estimator = CheapFinetune(tiny["teacher"], tiny["data"], tiny["importance"], recipe, threads=1)
    student = estimator.build(HALF)
    before = student.classifier.weight.detach().clone()
    error_before = _logit_error(estimator, student, 4)
    student.train()
    assert estimator.probe_head(student)
    assert not torch.equal(student.classifier.weight, before)
    assert student.training  # the probe puts the model back in the mode it found it
    assert _logit_error(estimator, student, 4) < error_before
    # An infinitely strong pull towards the old head leaves it as it was.
    strong = estimator.build(HALF)
    batches = [estimator.shared.batch(step) for step in range(2)]
    targets = [estimator._teacher_outputs(step, batch, False)[0] for step, batch in enumerate(batches)]
    assert refit_head(strong, batches, targets, ridge=1e9)
    assert torch.allclose(strong.classifier.weight, before, atol=1e-5)
    assert not refit_head(student.bert, batches, targets)  # no classifier: nothing to fit


def test_only_candidates_that_drop_layers_get_their_head_refitted(tiny: dict) -> None:
    heads = {}
    for refit in (False, True):
        recipe = FinetuneRecipe(max_seq_len=32, eval_samples=60, refit_head=refit)
        estimator = CheapFinetune(tiny["teacher"], tiny["data"], tiny["importance"], recipe,
                                  threads=1)
        assert (estimator.refits_head(HALF), estimator.refits_head(SPARSE_INT8)) == (refit, False)
        for arch in (HALF, SPARSE_INT8):
            student, result = estimator.train(arch, 0)
            heads[refit, arch] = student.classifier.weight.detach().clone()
    assert FinetuneRecipe.from_spec(EstimateSpec(refit_head=True)).refit_head
    assert not FinetuneRecipe.from_spec(EstimateSpec()).refit_head  # off unless asked for
    teacher_head = tiny["teacher"].model.classifier.weight
    assert torch.equal(heads[False, HALF], teacher_head)
    assert not torch.equal(heads[True, HALF], teacher_head)
    assert torch.equal(heads[True, SPARSE_INT8], teacher_head)  # all layers kept: untouched


def test_proxy_scores_without_training(tiny: dict) -> None:
    recipe = FinetuneRecipe(max_seq_len=32, eval_samples=100, quantize="none")
    proxy = ProxyEstimator.create(tiny["teacher"], tiny["data"], tiny["importance"], recipe,
                                  threads=1)
    dense = proxy.evaluate(DENSE)
    assert dense.value == pytest.approx(tiny["teacher"].metric)  # nothing removed: the teacher
    assert dense.steps == 0 and dense.samples == 0
    kd = ProxyEstimator(proxy.finetune, mode="distill", batches=3)
    assert kd.evaluate(DENSE).value == pytest.approx(0.0, abs=1e-4)
    assert kd.evaluate(HALF).value < -1e-3
    assert kd.metric_name == "neg_distill_loss"


def test_null_estimator_ranks_by_capacity() -> None:
    null = NullEstimator(num_heads=4)
    assert null.evaluate(DENSE, 0).value > null.evaluate(HALF, 0).value > 0
    assert null.evaluate(HALF, 5).steps == 5


def test_a_head_that_does_not_fit_the_task(tiny: dict) -> None:
    three = write_model(tiny["root"] / "three-way", num_labels=3)
    with pytest.raises(ModelError, match=r"head has 3 outputs, task 'sst2' needs 2") as info:
        prepare_teacher(str(three), tiny["data"], tiny["recipe"], cache=tiny["cache"],
                        progress=False)
    assert "\n" not in str(info.value)
    from autoprune.estimate.teacher import Teacher

    with pytest.raises(ModelError, match="teacher has 2 outputs, task 'mnli' needs 3"):
        Teacher.load(tiny["teacher"].directory, GLUE_TASKS["mnli"])


def test_build_estimator_from_a_job_spec(tiny: dict, tmp_path: Path) -> None:
    from autoprune.estimate import build_estimator
    from autoprune.spec import JobSpec

    glue = tmp_path / "SST-2"
    glue.mkdir()
    for name, split in (("train.tsv", sentiment_split(200, 3)), ("dev.tsv", sentiment_split(40, 4))):
        rows = "".join(f"{t[0]}\t{y}\n" for t, y in zip(split.texts, split.labels))
        (glue / name).write_text("sentence\tlabel\n" + rows)
    spec = JobSpec.from_dict({
        "name": "tiny", "model": str(tiny["model"]),
        "task": {"name": "sst2", "data_dir": str(glue)},
        "latency": {"profile": True, "budget_ratio": 0.5}, "space": "bert-full",
        "controller": {"name": "random"},
        "estimate": {"steps": 4, "teacher_steps": 20, "teacher_lr": 2e-3, "max_seq_len": 32},
    })
    estimator = build_estimator(spec, cache=tiny["cache"], threads=1, progress=False)
    assert isinstance(estimator, CheapFinetune) and estimator.teacher.steps == 20
    result = estimator.evaluate(HALF, steps=4)
    assert result.steps == 4 and result.metric_name == "accuracy"
    assert result.checkpoint is not None  # rungs can resume by default
    assert result.checkpoint.is_relative_to(tiny["cache"].root / "checkpoints")
    again = build_estimator(spec, cache=tiny["cache"], threads=1, progress=False)
    assert again.teacher.cached  # type: ignore[attr-defined]
    proxy = build_estimator(spec.model_copy(update={"estimate": spec.estimate.model_copy(
        update={"kind": "proxy"})}), cache=tiny["cache"], threads=1, progress=False)
    assert isinstance(proxy, ProxyEstimator)
    null = build_estimator(spec.model_copy(update={"estimate": spec.estimate.model_copy(
        update={"kind": "null"})}))
    assert isinstance(null, NullEstimator)
    # Export and the guided controllers reach the teacher's fine-tuner through any estimator.
    assert estimator.finetuner is estimator and proxy.finetuner is proxy.finetune
    assert null.finetuner is None
    # A fine-tune seed of its own reseeds the candidates' training, not the cached teacher.
    reseeded = build_estimator(spec.model_copy(update={"estimate": spec.estimate.model_copy(
        update={"finetune_seed": 5})}), cache=tiny["cache"], threads=1, progress=False)
    assert reseeded.teacher.cached and reseeded.teacher.key == estimator.teacher.key  # type: ignore[attr-defined]
    assert reseeded.recipe.seed == 5 and estimator.recipe.seed == 0  # type: ignore[attr-defined]
    assert not torch.equal(reseeded.shared.batch(0)["input_ids"],  # type: ignore[attr-defined]
                           estimator.shared.batch(0)["input_ids"])
    assert FinetuneRecipe.from_spec(EstimateSpec(seed=3)).seed == 3
    assert FinetuneRecipe.from_spec(EstimateSpec(seed=3, finetune_seed=7)).seed == 7


@pytest.mark.slow
def test_minilm_on_sst2_end_to_end(glue_dir: Path, minilm_dir: Path, tmp_path: Path) -> None:
    """The real path: packaged MiniLM, the shared SST-2 files, a short teacher and estimate."""
    from autoprune.data import load_task
    from autoprune.spec import TaskSpec

    data = load_task(TaskSpec(name="sst2", data_dir=glue_dir / "SST-2", max_train_samples=3000,
                              max_eval_samples=300))
    cache = DiskCache(tmp_path / "cache")
    teacher = prepare_teacher("minilm-l6", data, TeacherRecipe(steps=80), cache=cache,
                              threads=2, progress=False)
    assert teacher.metric > 0.7  # 80 steps from a sentence encoder already separate SST-2
    importance, _ = prepare_importance(teacher, data, batches=4, cache=cache, threads=2)
    estimator = CheapFinetune(teacher, data, importance, FinetuneRecipe(), threads=2)
    half = Architecture.uniform(6, LayerConfig(heads=6, ffn=0.5, bits=8))
    result = estimator.evaluate(half, steps=10)
    assert result.steps == 10 and 0.4 < result.value <= 1.0
    proxy = ProxyEstimator(estimator).evaluate(Architecture.dense(6, 12))
    assert proxy.value == pytest.approx(teacher.metric, abs=0.02)  # fake-quant off: the teacher

