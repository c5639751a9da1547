"""Calls a deployed relay: finds its URL, signs requests with SigV4, and streams the answer."""
