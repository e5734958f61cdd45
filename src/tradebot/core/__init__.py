"""The pure core: no asyncio, no I/O, no clock, no logging.

Given events and state it returns decisions. Time comes from the events (candle close times).
"""
