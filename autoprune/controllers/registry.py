"""Controllers by name, imported on first use.

Importing a controller module pulls in its library (torch for ``amc``, Optuna, pymoo), so the
registry maps names to import paths and loads a class only when it is asked for: the CLI
stays quick and a job using ``random`` never imports torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from autoprune.errors import SpecError

if TYPE_CHECKING:
    from autoprune.controllers.base import Controller

_PATHS: dict[str, str] = {
    "random": "autoprune.controllers.random:RandomController",
    "uniform": "autoprune.controllers.uniform:UniformController",
    "guided": "autoprune.controllers.guided:GuidedController",
    "evolution": "autoprune.controllers.evolution:EvolutionController",
    "swiftpruner": "autoprune.controllers.swiftpruner:SwiftPrunerController",
    "amc": "autoprune.controllers.amc:AMCController",
    "optuna-tpe": "autoprune.controllers.optuna:OptunaTPEController",
    "optuna-nsga2": "autoprune.controllers.optuna:OptunaNSGA2Controller",
    "pymoo-nsga2": "autoprune.controllers.pymoo:PymooNSGA2Controller",
}
# Short spellings a job spec may use.
_ALIASES: dict[str, str] = {
    "tpe": "optuna-tpe",
    "optuna": "optuna-tpe",
    "nsga2": "pymoo-nsga2",
    "pymoo": "pymoo-nsga2",
}


class ControllerRegistry(Mapping[str, "type[Controller]"]):
    """A read-only name -> controller-class mapping that imports lazily."""

    def __init__(self, paths: Mapping[str, str], aliases: Mapping[str, str]) -> None:
        self._paths = dict(paths)
        self._aliases = dict(aliases)
        self._loaded: dict[str, type[Controller]] = {}

    def __getitem__(self, name: str) -> type[Controller]:
        canonical = self._aliases.get(name, name)
        if canonical not in self._paths:
            raise KeyError(name)
        if canonical not in self._loaded:
            module_name, class_name = self._paths[canonical].split(":")
            self._loaded[canonical] = getattr(importlib.import_module(module_name), class_name)
        return self._loaded[canonical]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._aliases.get(name, name) in self._paths

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths)  # canonical names only: aliases would double every listing

    def __len__(self) -> int:
        return len(self._paths)


CONTROLLERS = ControllerRegistry(_PATHS, _ALIASES)


def get_controller(name: str) -> type[Controller]:
    """The controller class registered as ``name``; a spec error naming the choices if none."""
    try:
        return CONTROLLERS[name]
    except KeyError:
        raise SpecError(
            f"controller.name: unknown controller {name!r} (known: {', '.join(CONTROLLERS)})"
        ) from None
