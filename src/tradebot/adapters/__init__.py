"""I/O adapters: venues, feeds and the store. They translate wire formats to core types and map errors."""
