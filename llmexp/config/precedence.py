"""One precedence rule: what the user typed, group choices included, beats the recipe.

conf/config.yaml applies `recipe/<model>.yaml` after the groups, so a preset's batch, budget and
learning rate are right by default. Hydra alone would let that recipe beat a group the user chose
(`trainer=debug` keeps the recipe's batch sizes) and keep the recipe's `max_tokens` beside a typed
`trainer.max_steps` (the run stops at whichever comes first). Here a recipe key the user's choice
covers takes the value the composition has without the recipe:

  - a key typed on the command line (`trainer.micro_batch_size=4`): Hydra already applies it last;
  - a key of a group chosen on the command line (`trainer=debug`): the group's value;
  - one budget key typed (`trainer.max_steps=500`): the recipe's other budget key is dropped.

This rule is for the shipped preset recipes (conf/recipe/); a recipe in the user's own config
folders applies as Hydra composes it. `value_sources` says where each budget and batch value came
from, for the plan.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from omegaconf import DictConfig, OmegaConf

BUDGET = ("trainer.max_steps", "trainer.max_tokens")
REPORTED = (*BUDGET, "trainer.seq_len", "trainer.micro_batch_size", "trainer.global_batch_size", "optimizer.lr",
            "optimizer.warmup_steps")


def typed_keys(overrides: Sequence[str]) -> set[str]:
    """Keys and groups typed on the command line (`trainer=debug` -> 'trainer')."""
    return {o.split("=", 1)[0].lstrip("+~") for o in overrides if "=" in o and not o.startswith("hydra")}


def _recipe_keys(choices: dict, search: Sequence[Path]) -> dict[str, object]:
    """The keys of the preset recipe the composition chose. `search` ends with the shipped conf/:
    only a shipped preset recipe yields to the user's choices; a recipe in the user's own config
    folders (a scaling study writes one per run) is part of the experiment's design and applies
    as Hydra composes it."""
    name = choices.get("recipe")
    if not name:
        return {}
    for folder in search:
        path = Path(folder) / "recipe" / f"{name}.yaml"
        if path.is_file():
            shipped = Path(folder).resolve() == Path(search[-1]).resolve()
            return _leaves(OmegaConf.to_container(OmegaConf.load(path))) if shipped else {}
    return {}


def _leaves(node: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in node.items():
        if isinstance(value, dict):
            out.update(_leaves(value, f"{prefix}{key}."))
        elif key != "defaults":
            out[f"{prefix}{key}"] = value
    return out


def _overruled(overrides: Sequence[str], recipe: dict[str, object]) -> list[str]:
    typed = typed_keys(overrides)
    keys = [k for k in recipe if k not in typed and k.split(".", 1)[0] in typed]
    if typed & set(BUDGET):
        keys += [k for k in BUDGET if k in recipe and k not in typed and k not in keys]
    return keys


def recipe_overrides(
    overrides: Sequence[str], choices: dict, search: Sequence[Path],
    compose_without: Callable[[list[str]], DictConfig],
) -> list[str]:
    """Overrides that restore what the user's choices give where the recipe would win."""
    keys = _overruled(overrides, _recipe_keys(choices, search))
    if not keys:
        return []
    base = compose_without(["~recipe"])
    return [f"{k}={_hydra_value(OmegaConf.select(base, k))}" for k in keys]


def _hydra_value(value: object) -> str:
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def value_sources(overrides: Sequence[str], choices: dict, search: Sequence[Path], composed: DictConfig) -> dict[str, str]:
    """`{key: "value (where from)"}` for the budget and batch keys of the plan."""
    typed = typed_keys(overrides)
    recipe = _recipe_keys(choices, search)
    overruled = set(_overruled(overrides, recipe))
    out = {}
    for key in REPORTED:
        group = key.split(".", 1)[0]
        if key in typed:
            origin = "command line"
        elif key in recipe and key not in overruled:
            origin = f"recipe {choices['recipe']}"
        elif key in BUDGET and key in overruled and group not in typed:
            origin = f"recipe {choices['recipe']}'s value dropped: the other budget key was typed"
        elif group in typed:
            origin = f"{group}={choices.get(group)} (command line)"
        else:
            origin = f"{group}={choices.get(group)}" if choices.get(group) else "default"
        value = OmegaConf.select(composed, key)
        out[key] = f"{'null' if value is None else value} ({origin})"
    return out

