"""`python -m crossroads` is the `crossroads` command."""

from crossroads.cli import main

main()
