"""The libvirt suite's fixtures, defined once for every module here.

Session-scoped fixtures must be defined in ONE place: a fixture imported into
two test modules is two fixtures, and each would start its own testbed (two
host A's fighting over the one kernel ``br-int``). Nothing imports from this
file; helpers live in ``libvirt_*`` modules and ``testkit``.
"""

from libvirt_fixtures import agent_pair, broker, guests, testbed  # noqa: F401
