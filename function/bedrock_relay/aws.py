"""The process's one botocore session: clients built from it share its loaded endpoint and model data."""

from __future__ import annotations

from functools import cache

import botocore.session


@cache
def session() -> botocore.session.Session:
    """Return the session; a second client from it costs ~10 ms at start instead of ~70 ms."""
    return botocore.session.get_session()
