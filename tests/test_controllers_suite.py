"""The shared controller contract (autoprune.controllers.testing) over every controller."""

from __future__ import annotations

import pytest

from autoprune.controllers import CONTROLLERS
from autoprune.controllers import testing as suite

CASES = [
    (name, check) for name in CONTROLLERS for check in suite.CHECKS if suite.applicable(name, check)
]


@pytest.mark.parametrize(("name", "check"), CASES, ids=[f"{n}-{c}" for n, c in CASES])
def test_controller_contract(name: str, check: str) -> None:
    suite.CHECKS[check](name)


def test_every_controller_is_covered() -> None:
    assert {name for name, _ in CASES} == set(CONTROLLERS)
    assert len(CONTROLLERS) >= 8
