"""The sandbox policy of kernel containers: seccomp, capabilities, rlimits, user."""
