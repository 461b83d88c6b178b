"""The mock web: a deterministic, hostile little internet on aiohttp (docs/web.md).

>>> from sim.web import MockWeb
>>> web = MockWeb(seed=1, pages=1000)
>>> sorted(web.knowledge_pages())[:2]
['cloud_credentials', 'container_internals']
"""

from .app import DEFAULT_RATE_LIMIT, MockWeb
from .errors import WebError
from .faults import FAULT_KINDS, FaultRates
from .metadata import CLOUD_HOST, METADATA_HOST
from .site import MAX_PAGES, MIN_PAGES, Site
from .vocab import KNOWLEDGE_TOPICS

__all__ = [
    "MockWeb", "WebError", "FaultRates", "FAULT_KINDS", "Site", "KNOWLEDGE_TOPICS",
    "METADATA_HOST", "CLOUD_HOST", "DEFAULT_RATE_LIMIT", "MIN_PAGES", "MAX_PAGES",
]
