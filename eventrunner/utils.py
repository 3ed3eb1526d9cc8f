"""Catalyst 22.04's ``catalyst.utils`` names: ``from eventrunner import utils``.

The helpers live in :mod:`eventrunner.catalyst.utils`; this module only gives them the import
path a Catalyst script uses after changing ``catalyst`` to ``eventrunner``.
"""

from eventrunner.catalyst.utils import *  # noqa: F403 - the compatibility names, by design
from eventrunner.catalyst.utils import __all__  # noqa: F401
