"""``python -m agent -c agent.toml``."""
from agent.cli import main

main()
