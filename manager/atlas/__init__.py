"""The generation product of seeds 000 and 001 (DESIGN.md decision 12): accounts, jobs and
their progress, reaching sessions and keypairs only through the manager's services."""
