"""``python -m harmonix`` runs the CLI."""

from harmonix.cli import main

main()
