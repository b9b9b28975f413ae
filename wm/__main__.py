"""`python -m wm` is the same as the `wm` command."""
from wm.cli import main

main()
