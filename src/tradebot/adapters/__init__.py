"""I/O adapters: venues, market feeds and the event store; they translate wire and rows to core types."""
