"""The Store contract, continued: what the broker's results route reads and is told.

``parties`` answers who takes part in a migration without its vifs (the
route's access check); ``record_results`` tells how each vif it wrote stood
before (the route's metrics), so the route reads nothing before the write.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from test_contract import DOM, MAC1, MAC2, T0, iface, ok, req

from vifbroker.model import MigrationState, ResultIn, VifStatus
from vifbroker.store import NotFound, Prior, Store

T1 = T0 + timedelta(seconds=5)


async def test_parties_names_who_takes_part_in_any_migration(store: Store) -> None:
    with pytest.raises(NotFound):
        await store.parties("m-none")
    m, _ = await store.create_migration(req(id="m1"), T0, registered_by="b")
    await store.put_interfaces(DOM, [iface(MAC1)], T0)
    parties = await store.parties("m1")
    assert (parties.migration_id, parties.source_host, parties.destination_host) == ("m1", "a", "b")
    assert parties.registered_by == "b" == m.registered_by
    # An ended migration still has its parties (a late result is refused by the write).
    await store.transition("m1", MigrationState.CANCELLED, T0)
    assert await store.parties("m1") == parties


async def test_record_results_tells_how_each_written_vif_stood_before(store: Store) -> None:
    m, _ = await store.create_migration(req(), T0)
    await store.put_interfaces(DOM, [iface(MAC1), iface(MAC2)], T0)
    first = await store.record_results(m.id, [ok(MAC1, 1)], T0)
    assert first.prior == {MAC1: Prior(VifStatus.PENDING, 0, None)}
    assert [v.status for v in first.migration.interfaces] == [VifStatus.APPLIED, VifStatus.PENDING]
    assert first.migration == await store.get_migration(m.id)
    landed = first.migration.interfaces[0].applied_at
    assert landed is not None and landed.tzinfo is not None
    # A repeat is written again: its prior is what the first one left.
    failed = ResultIn(mac=MAC2, generation=1, status="failed", detail="no local port")
    again = await store.record_results(m.id, [ok(MAC1, 1, "pd"), failed], T1)
    assert again.prior == {
        MAC1: Prior(VifStatus.APPLIED, 1, landed),
        MAC2: Prior(VifStatus.PENDING, 0, None),
    }
    # A result for an older generation writes nothing, so it has no prior.
    await store.put_interfaces(DOM, [iface(MAC1, "v2")], T1)
    stale = await store.record_results(m.id, [ok(MAC1, 1)], T1)
    assert stale.prior == {}
    assert stale.migration.interfaces[0].generation == 2
    assert stale.migration.interfaces[0].applied_generation == 1
