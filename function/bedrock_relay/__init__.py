"""Relays Amazon Bedrock ConverseStream tokens to HTTP clients as they are generated."""
