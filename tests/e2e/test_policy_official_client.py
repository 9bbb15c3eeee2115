"""Keypair resource policies through the official client 18.12.3, unmodified: an admin
gives a new keypair a policy with ``admin keypairs add --resource-policy``, and that
keypair's ``backend.ai run`` is held to it with a message naming the limit."""
from __future__ import annotations

import pytest

from tests.e2e.cluster import Cluster
from tests.e2e.conftest import Run

pytestmark = pytest.mark.e2e


def test_policy_given_by_the_client_limits_its_sessions(bai: Run, cluster: Cluster) -> None:
    cluster.sql("INSERT INTO keypair_resource_policies (name, max_concurrent_sessions) "
                "VALUES ('e2e-one', 1) RETURNING 1")
    refused = bai("admin", "keypairs", "add", "policy-e2e-user", "--resource-policy", "nope")
    assert "no keypair resource policy named 'nope'" in refused.stdout + refused.stderr
    added = bai("admin", "keypairs", "add", "policy-e2e-user", "--resource-policy", "e2e-one")
    assert added.returncode == 0, added.stderr
    keys = {"BACKEND_ACCESS_KEY": added.stdout.split("Access Key:")[1].split()[0],
            "BACKEND_SECRET_KEY": added.stdout.split("Secret Key:")[1].split()[0]}
    try:
        first = bai("run", "-t", "policy-e2e-a", "python", "-c", "print(6 * 7)", **keys)
        assert first.returncode == 0 and "42" in first.stdout, first.stderr
        second = bai("run", "-t", "policy-e2e-b", "python", "-c", "print(1)", **keys)
        said = second.stdout + second.stderr
        # the client prints the problem's title (the detail names the policy's limit)
        assert "412 Precondition Failed" in said and "Keypair quota exceeded" in said
        assert cluster.sql("SELECT count(*) FROM kernels WHERE session_name = "
                           "'policy-e2e-b'") == 0
    finally:
        bai("terminate", "policy-e2e-a", **keys)
    assert cluster.sql("SELECT status FROM kernels WHERE session_name = 'policy-e2e-a'") in (
        "TERMINATED", "TERMINATING")
