"""Every eBox test runs with the client's traffic checked against the published Swagger files."""

from __future__ import annotations

import pytest

from tests.support.contracts import swagger_checked  # noqa: F401  (fixture)


@pytest.fixture(autouse=True)
def _contract_checked(swagger_checked):  # noqa: F811
    return swagger_checked
