"""Tests of the task registry and of instruction resolution with the real MiniLM sentence encoder."""

from __future__ import annotations

import re

import pytest

from omnist import tasks
from omnist.tasks import _registry

EXPRESSION_PARAPHRASES = [
    "predict expression from H&E",
    "infer gene expression from the histology image",
    "what is the transcriptome of each spot given the H&E",
    "estimate the gene expression profile from histology",
]
UNRELATED_INSTRUCTIONS = ["bake a chocolate cake", "book a flight to Paris", "what is the weather tomorrow"]
STAIN_TEMPLATES = (
    "rate the staining quality of the H&E slide",
    "score how well the tissue section is stained",
    "is this H&E image over- or under-stained",
)
GENES = ["ERBB2", "CD24", "ACTB", "HLA-DRA"]


@pytest.fixture(autouse=True)
def restore_registry():
    """Put the registry back as it was, so that tasks registered by a test do not leak into others."""
    saved = dict(_registry._REGISTRY)
    yield
    _registry._REGISTRY.clear()
    _registry._REGISTRY.update(saved)


def _register_stain_task(**overrides) -> tasks.TaskSpec:
    arguments = {"inputs": ("image",), "output": "embedding", "description": "Staining quality of the H&E image."}
    arguments.update(overrides)
    return tasks.register("image_to_stain_quality", STAIN_TEMPLATES, **arguments)


# Built-in tasks


def test_builtin_image_to_expression_registered():
    spec = tasks.get("image_to_expression")
    assert spec.builtin
    assert spec.inputs == ("image",)
    assert spec.output == "expression"
    assert spec.target == "expression"
    assert "predict expression from H&E" in spec.templates


def test_list_tasks_builtin_first():
    _register_stain_task()
    listed = tasks.list_tasks()
    flags = [spec.builtin for spec in listed]
    assert flags == sorted(flags, reverse=True)
    assert listed[-1].name == "image_to_stain_quality"


def test_get_unknown_task_raises():
    with pytest.raises(KeyError, match="'no_such_task' is not registered.*image_to_expression"):
        tasks.get("no_such_task")


# register and unregister


def test_register_then_get():
    spec = _register_stain_task()
    assert tasks.get("image_to_stain_quality") == spec
    assert spec.templates == STAIN_TEMPLATES
    assert spec.inputs == ("image",)
    assert spec.output == "embedding"
    assert not spec.builtin
    assert "image_to_stain_quality" in [listed.name for listed in tasks.list_tasks()]


def test_register_same_spec_twice_allowed():
    first = _register_stain_task()
    second = _register_stain_task()
    assert first == second
    assert tasks.get("image_to_stain_quality") == first


def test_register_conflict_raises():
    _register_stain_task()
    with pytest.raises(ValueError, match="'image_to_stain_quality' is already registered.*overwrite=True"):
        _register_stain_task(output="text")
    assert tasks.get("image_to_stain_quality").output == "embedding"


def test_register_overwrite_replaces():
    _register_stain_task()
    _register_stain_task(output="text", overwrite=True)
    assert tasks.get("image_to_stain_quality").output == "text"


def test_unregister_removes_task():
    _register_stain_task()
    tasks.unregister("image_to_stain_quality")
    with pytest.raises(KeyError):
        tasks.get("image_to_stain_quality")
    assert "image_to_stain_quality" not in [spec.name for spec in tasks.list_tasks()]


def test_unregister_builtin_raises():
    with pytest.raises(ValueError, match="built in"):
        tasks.unregister("image_to_expression")
    assert tasks.get("image_to_expression").builtin


def test_unregister_unknown_raises():
    with pytest.raises(KeyError, match="'no_such_task' is not registered"):
        tasks.unregister("no_such_task")


def test_register_identical_builtin_stays_builtin():
    builtin = tasks.get("image_to_expression")
    tasks.register(
        builtin.name,
        builtin.templates,
        inputs=builtin.inputs,
        output=builtin.output,
        target=builtin.target,
        description=builtin.description,
    )
    assert tasks.get("image_to_expression").builtin


@pytest.mark.parametrize("name", ["", "two words", "1task", "image-to-text"])
def test_register_invalid_name_raises(name):
    with pytest.raises(ValueError, match="name .* is invalid"):
        tasks.register(name, STAIN_TEMPLATES, inputs=("image",), output="embedding")


@pytest.mark.parametrize("inputs", [(), ("audio",), ("image", "video")], ids=["empty", "audio", "video"])
def test_register_invalid_inputs_raises(inputs):
    with pytest.raises(ValueError, match=r"invalid inputs .*choose from \['image', 'expression', 'graph', 'text'\]"):
        tasks.register("image_to_stain_quality", STAIN_TEMPLATES, inputs=inputs, output="embedding")
    with pytest.raises(KeyError):
        tasks.get("image_to_stain_quality")


@pytest.mark.parametrize("output", ["labels", "image", ""])
def test_register_invalid_output_raises(output):
    with pytest.raises(ValueError, match=r"invalid output .*choose from \['expression', 'text', 'embedding'\]"):
        tasks.register("image_to_stain_quality", STAIN_TEMPLATES, inputs=("image",), output=output)


def test_register_no_templates_raises():
    with pytest.raises(ValueError, match="no instruction templates"):
        tasks.register("image_to_stain_quality", [], inputs=("image",), output="embedding")


def test_register_single_string_templates():
    try:
        spec = tasks.register("image_to_stain_quality", STAIN_TEMPLATES[0], inputs=("image",), output="embedding")
    except (TypeError, ValueError):
        return
    assert spec.templates == (STAIN_TEMPLATES[0],)


def test_snapshot_restore_roundtrip():
    spec = _register_stain_task()
    records = tasks.snapshot(["image_to_stain_quality"])
    assert records == [spec.to_dict()]
    tasks.unregister("image_to_stain_quality")
    restored = tasks.restore(records)
    assert restored == [spec]
    assert tasks.get("image_to_stain_quality") == spec


def test_restore_keeps_registered_task():
    spec = _register_stain_task()
    record = {**spec.to_dict(), "description": "another description"}
    tasks.restore([record])
    assert tasks.get("image_to_stain_quality").description == spec.description


# Instruction resolution with the MiniLM encoder


@pytest.mark.parametrize("instruction", EXPRESSION_PARAPHRASES)
def test_resolve_paraphrase_to_image_to_expression(text_embed, instruction):
    resolved = tasks.resolve(instruction, text_embed)
    assert resolved.task.name == "image_to_expression"
    assert resolved.score >= tasks.MIN_SIMILARITY
    assert resolved.ranking[0] == ("image_to_expression", pytest.approx(resolved.score))
    assert resolved.instruction == instruction


def test_resolve_template_scores_one(text_embed):
    resolved = tasks.resolve("predict expression from H&E", text_embed)
    assert resolved.score == pytest.approx(1.0, abs=1e-5)


def test_resolve_ranking_covers_every_task(text_embed):
    resolved = tasks.resolve("predict expression from H&E", text_embed)
    names = [name for name, _ in resolved.ranking]
    scores = [score for _, score in resolved.ranking]
    assert sorted(names) == sorted(spec.name for spec in tasks.list_tasks())
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("instruction", UNRELATED_INSTRUCTIONS)
def test_resolve_unrelated_raises(text_embed, instruction):
    with pytest.raises(ValueError, match="matches no task well") as error:
        tasks.resolve(instruction, text_embed)
    message = str(error.value)
    closest = re.search(r"Closest tasks: (.+?)\. ", message)
    assert closest is not None
    listed = re.findall(r"(\w+) \((-?\d\.\d\d)\)", closest.group(1))
    assert len(listed) == min(3, len(tasks.list_tasks()))
    assert all(float(score) < tasks.MIN_SIMILARITY for _, score in listed)
    assert instruction in message


@pytest.mark.parametrize("instruction", ["", "   ", None])
def test_resolve_empty_instruction_raises(text_embed, instruction):
    with pytest.raises(ValueError, match="is empty"):
        tasks.resolve(instruction, text_embed)


def test_resolve_min_similarity_threshold(text_embed):
    with pytest.raises(ValueError, match="best similarity 1.00 < 1.01"):
        tasks.resolve("predict expression from H&E", text_embed, min_similarity=1.01)


def test_resolve_restricted_tasks(text_embed):
    _register_stain_task()
    resolved = tasks.resolve(EXPRESSION_PARAPHRASES[1], text_embed, tasks=["image_to_expression"])
    assert resolved.task.name == "image_to_expression"
    assert [name for name, _ in resolved.ranking] == ["image_to_expression"]
    with pytest.raises(ValueError, match=r"Closest tasks: image_to_stain_quality \(\d\.\d\d\)\. "):
        tasks.resolve(EXPRESSION_PARAPHRASES[1], text_embed, tasks=["image_to_stain_quality"])


def test_resolve_unknown_restricted_task_raises(text_embed):
    with pytest.raises(KeyError, match="'no_such_task' is not registered"):
        tasks.resolve("predict expression from H&E", text_embed, tasks=["no_such_task"])


def test_resolve_no_tasks_raises(text_embed):
    with pytest.raises(ValueError, match="No tasks are available"):
        tasks.resolve("predict expression from H&E", text_embed, tasks=[])


@pytest.mark.parametrize(
    "instruction",
    ["how good is the staining of this slide", "judge whether the H&E stain is too weak or too strong"],
)
def test_resolve_registered_task(text_embed, instruction):
    _register_stain_task()
    resolved = tasks.resolve(instruction, text_embed)
    assert resolved.task.name == "image_to_stain_quality"
    assert resolved.score >= tasks.MIN_SIMILARITY


def test_resolve_registered_task_keeps_expression(text_embed):
    _register_stain_task()
    resolved = tasks.resolve("infer gene expression from the histology image", text_embed)
    assert resolved.task.name == "image_to_expression"


def test_resolve_unregistered_task_not_matched(text_embed):
    _register_stain_task()
    tasks.unregister("image_to_stain_quality")
    resolved = tasks.resolve("rate the staining quality of the H&E slide", text_embed, min_similarity=-1.0)
    assert "image_to_stain_quality" not in [name for name, _ in resolved.ranking]


# Gene symbols in instructions


def test_resolve_parses_genes(text_embed):
    resolved = tasks.resolve("predict ERBB2 and CD24 from H&E", text_embed, gene_vocabulary=GENES)
    assert resolved.task.name == "image_to_expression"
    assert resolved.genes == ["ERBB2", "CD24"]


def test_resolve_without_vocabulary_finds_no_genes(text_embed):
    resolved = tasks.resolve("predict ERBB2 and CD24 from H&E", text_embed)
    assert resolved.genes == []


@pytest.mark.parametrize(
    ("instruction", "expected"),
    [
        ("predict CD24 and ERBB2 from H&E", ["CD24", "ERBB2"]),
        ("predict Erbb2 from H&E", ["ERBB2"]),
        ("predict ERBB2, ERBB2 and ACTB", ["ERBB2", "ACTB"]),
        ("predict HLA-DRA from the H&E image", ["HLA-DRA"]),
        ("predict actb from the image", []),
        ("predict expression from H&E", []),
    ],
    ids=["order", "mixed_case", "repeated", "hyphen", "lower_case_word", "none"],
)
def test_parse_genes_cases(instruction, expected):
    assert tasks.parse_genes(instruction, GENES) == expected


def test_parse_genes_single_letters_ignored():
    assert tasks.parse_genes("predict expression from H&E", ["H", "E"]) == []


def test_parse_genes_sentence_end():
    assert tasks.parse_genes("Predict ERBB2 and CD24.", GENES) == ["ERBB2", "CD24"]


def test_parse_query_quoted_text():
    assert tasks.parse_query('find "tertiary lymphoid structures" in the section') == "tertiary lymphoid structures"
