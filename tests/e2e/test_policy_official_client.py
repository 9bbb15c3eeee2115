"""Keypair resource policies through the official client 18.12.3, unmodified: an admin
gives a new keypair a policy with ``admin keypairs add --resource-policy``, and that
keypair's ``backend.ai run`` is held to it with a message naming the limit."""
from __future__ import annotations

import shutil
import subprocess

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


def test_run_lands_in_the_group_the_policy_allows(bai: Run, cluster: Cluster) -> None:
    """A second real agent configured with ``group = "e2e-gpu"``: a keypair whose policy
    allows only that group runs there; the cluster's own agent (group default) is not used."""
    agent_id = cluster.agent_id + "-g"
    config = (cluster.workdir / "agent.toml").read_text().replace(
        f'agent_id = "{cluster.agent_id}"', f'agent_id = "{agent_id}"\ngroup = "e2e-gpu"'
    ).replace(str(cluster.workdir / "scratch"), str(cluster.workdir / "scratch-g"))
    assert 'group = "e2e-gpu"' in config
    (cluster.workdir / "agent-g.toml").write_text(config)
    cluster.sql("INSERT INTO agent_groups (name) VALUES ('e2e-gpu') RETURNING 1")
    cluster.sql("INSERT INTO keypair_resource_policies (name, allowed_groups) "
                "VALUES ('e2e-gpu-only', '[\"e2e-gpu\"]') RETURNING 1")
    added = bai("admin", "keypairs", "add", "group-e2e-user", "--resource-policy",
                "e2e-gpu-only")
    keys = {"BACKEND_ACCESS_KEY": added.stdout.split("Access Key:")[1].split()[0],
            "BACKEND_SECRET_KEY": added.stdout.split("Secret Key:")[1].split()[0]}
    try:
        cluster.start_agent("agent-g", agent_id)
        assert cluster.sql("SELECT scaling_group FROM agents WHERE id = $1",
                           agent_id) == "e2e-gpu"
        out = bai("run", "-t", "group-e2e", "python", "-c", "print('in group')", **keys)
        assert out.returncode == 0 and "in group" in out.stdout, out.stderr
        assert cluster.sql("SELECT agent_id FROM kernels WHERE session_name = 'group-e2e'"
                           ) == agent_id
    finally:
        bai("terminate", "group-e2e", **keys)
        cluster.stop_process("agent-g")
        left = subprocess.run(["docker", "ps", "-aq", "--filter",
                               f"label=ai.backend.agent-id={agent_id}"],
                              capture_output=True, text=True, check=False).stdout.split()
        if left:
            subprocess.run(["docker", "rm", "-f", *left], capture_output=True, check=False)
        shutil.rmtree(cluster.workdir / "scratch-g", ignore_errors=True)
