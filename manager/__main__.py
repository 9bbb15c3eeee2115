"""``python -m manager``: the manager's command line."""
from manager.cli import main

main()
