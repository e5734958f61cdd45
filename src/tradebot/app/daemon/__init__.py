"""The live daemon (``tradebot run``) and its parts: start-up (``bootstrap``, the ``interlock`` on
hosts and keys, the runtime ``clock``), the engine loop (``daemon``, the cross-symbol ``sequencer``),
execution (``paper`` for the simulated venue, ``venue_router`` → the order executor in ``execution``
→ a ccxt venue, with ``reconcile`` against the venue) and what it reports while running (``status``
line, ``health`` file). The package re-exports nothing, so importing one part (e.g. the executor in
a test) does not load ccxt and the websocket feeds through ``bootstrap``.
"""
