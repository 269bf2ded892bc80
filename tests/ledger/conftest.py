"""Each registered experiment runs once at its tiny size per test session; tests share the results."""

import pytest

import depthscope.ledger as ledger


@pytest.fixture(scope="session")
def tiny_results() -> dict[str, ledger.ClaimResult]:
    return {claim_id: ledger.run(claim_id, preset="tiny") for claim_id in ledger.list_experiments()}
