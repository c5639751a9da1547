"""The relay's benchmark: added latency, first byte, throughput, cold start, memory, concurrency, soak."""
