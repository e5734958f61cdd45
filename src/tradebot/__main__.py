"""`python -m tradebot` entry point."""

from tradebot.cli import main

raise SystemExit(main())
