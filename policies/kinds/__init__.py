"""Guard kinds: one module each (threshold, event, deception, python), found through the
registry in base.py. Importing this package registers the built-in kinds.

>>> from policies.kinds import kinds
>>> [k.name for k in kinds()]
['threshold', 'event', 'deception', 'python']
"""

from . import threshold, event, deception, python  # noqa: F401  (each registers its kind)
from .base import FIRING, INACTIVE, PENDING, Conditional, GuardKind, GuardState, Latching  # noqa: F401
from .base import kind_named, kind_of, kinds, register_kind, sniff, unregister_kind  # noqa: F401
