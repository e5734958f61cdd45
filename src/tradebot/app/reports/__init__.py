"""Reports of a run, whichever driver ran it: the summary dict and its JSON file (``report``), built
from the engine's final state (``summary``), printed as rich tables (``tables``) or drawn as an
equity/drawdown chart (``chart``); a stored run's trades as a table, CSV or JSON (``export``) and its
price pictures (``plots``). Only ``chart`` and ``plots`` import matplotlib. The backtest, the daemon
and the demo all end with this summary, so it lives beside them rather than inside one; the package
re-exports nothing, so importing one part never loads matplotlib or rich.
"""
