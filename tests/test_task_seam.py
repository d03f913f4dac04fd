"""The task seam as the only seam (issue 29): one ``Task`` type, tasks that import nothing above them, one
registry the engine reads, and no task name compared as a string outside ``reslab.tasks``.

Outside ``reslab.tasks`` the only task-like words compared are the model registry's kinds of network
(:data:`MODEL_KINDS`).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import reslab
from reslab.tasks import TASKS
from reslab.tasks.base import Task

SRC = Path(reslab.__file__).parent
TASK_NAMES = ("classification", "detection", "segmentation", "video", "super-resolution", "sr", "style")
# The model registry's own vocabulary: the kind of network a model is ("super-resolution" models have no
# classes), which a task reads; not a dispatch on the task being trained.
MODEL_KINDS = {"models/registry.py", "models/dense.py"}
COMPARED = re.compile(r"""(==|!=|\bin)\s*\(?\s*["'](""" + "|".join(map(re.escape, TASK_NAMES)) + r""")["']""")


def _modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def test_no_task_name_is_compared_as_a_string_outside_tasks():
    found = []
    for path in _modules():
        rel = path.relative_to(SRC).as_posix()
        if rel.startswith("tasks/") or rel in MODEL_KINDS:
            continue
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if COMPARED.search(line.split("#")[0]):
                found.append(f"{rel}:{i}: {line.strip()}")
    assert not found, "dispatch through reslab.tasks instead:\n" + "\n".join(found)


def test_one_task_type():
    defined = [
        f"{p.relative_to(SRC)}"
        for p in _modules()
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
        if isinstance(node, ast.ClassDef) and node.name == "Task"
    ]
    assert defined == ["tasks/base.py"], defined


def test_tasks_import_nothing_above_them():
    above = ("reslab.train", "reslab.experiments", "reslab.cli", "reslab.deploy", "reslab.analysis")
    bad = []
    for path in sorted((SRC / "tasks").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            bad += [f"{path.name}: {n}" for n in names if n.startswith(above)]
    assert not bad, bad


# What reslab's loop calls; a task with ``drive`` runs its own loop (and writes the run's files itself).
LOOP_MEMBERS = {"loader", "info", "describe", "build_model", "forward", "evaluate", "select"}


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_registered_task_has_the_protocols_members(name):
    cls = TASKS[name]
    members = [m for m in dir(Task) if not m.startswith("_")] + list(Task.__annotations__)
    declared = set(dir(cls)) | {a for k in cls.__mro__ for a in getattr(k, "__annotations__", {})}
    if hasattr(cls, "drive"):  # a task that drives its library's loop (rl: stable-baselines3) has no step
        members = [m for m in members if m not in LOOP_MEMBERS]
    missing = [m for m in members if m not in declared]
    assert not missing, f"{name}: {missing}"


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_task_names_a_shipped_recipe_of_its_own_task(name):
    from reslab.train.recipe import list_recipes, load_recipe

    recipe = TASKS[name].recipe
    assert recipe in list_recipes()
    assert TASKS[load_recipe(recipe).task] is TASKS[name]
