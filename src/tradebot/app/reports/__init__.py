"""Reports of a run, whichever driver ran it: the summary dict and its JSON file (``report``), built
from the engine's final state (``summary``), printed as rich tables (``tables``) or drawn as an
equity/drawdown chart (``chart``, the only module that imports matplotlib). The backtest, the daemon
and the demo all end with this summary, so it lives beside them rather than inside one; the package
re-exports nothing, so importing one part never loads matplotlib or rich.
"""
