"""A local Bedrock stand-in: ConverseStream over HTTP with real event-stream frames."""
