"""``python -m pua`` runs the command line."""

from pua.cli import main

main()
