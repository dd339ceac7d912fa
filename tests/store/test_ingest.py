"""The ingest protocol: stored once, highest rev wins, replay changes nothing, durable before 200."""

from __future__ import annotations

import gzip
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import msgspec
import psycopg
import pytest

from sync.records import (
    EventRecord,
    KpiRecord,
    MaintenanceRequestRecord,
    decode_json,
    encode_json,
    encode_msgpack,
    format_ts,
)
from sync.store import StoreSettings
from tests.store.harness import StoreUnderTest, batch, new_line, rows, start_store, stop


def test_batch_is_stored_and_answered_with_the_accepted_count(store: StoreUnderTest) -> None:
    line = new_line()
    r = store.post(encode_json(batch(line, [stop(line, i) for i in range(5)])))
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 5, "duplicates": 0}
    assert [row[1] for row in rows(store.db_url, line)] == [f"{line}:stop:{i}" for i in range(5)]


def test_replayed_batch_changes_nothing_and_counts_duplicates(store: StoreUnderTest) -> None:
    line = new_line()
    body = encode_json(batch(line, [stop(line, i) for i in range(4)], batch_id="same"))
    assert store.post(body).json() == {"accepted": 4, "duplicates": 0}
    before = rows(store.db_url, line)
    assert store.post(body).json() == {"accepted": 0, "duplicates": 4}
    assert rows(store.db_url, line) == before


def test_msgpack_gzip_batch_is_stored_like_json(store: StoreUnderTest) -> None:
    line = new_line()
    recs = [stop(line, 1), EventRecord(id=f"{line}:event:1", site="p", area="a", line=line, machine="m",
                                       ts=format_ts(1_763_791_200), kind="plc_connected", detail={"plc": "main"})]
    body = gzip.compress(encode_msgpack(batch(line, recs)))
    r = store.post(body, Content_Type="application/msgpack", Content_Encoding="gzip")
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 2, "duplicates": 0}
    assert sorted(t for t, _, _ in rows(store.db_url, line)) == ["event", "stop"]


def test_higher_rev_replaces_and_lower_rev_arriving_late_is_a_duplicate(store: StoreUnderTest) -> None:
    line = new_line()
    closed = stop(line, 1, rev=2, end=format_ts(1_763_791_300), duration_s=40.0)
    assert store.post(encode_json(batch(line, [stop(line, 1, rev=0)]))).json()["accepted"] == 1
    assert store.post(encode_json(batch(line, [closed]))).json() == {"accepted": 1, "duplicates": 0}
    # The open revision is re-sent late (an agent retry): it must not reopen the stop.
    assert store.post(encode_json(batch(line, [stop(line, 1, rev=1)]))).json() == {"accepted": 0, "duplicates": 1}
    got = store.get("/v1/stops", line=line).json()["stops"]
    assert len(got) == 1 and got[0]["rev"] == 2 and got[0]["end"] == closed.end


def test_two_revs_of_one_record_in_one_batch_keep_the_highest(store: StoreUnderTest) -> None:
    line = new_line()
    r = store.post(encode_json(batch(line, [stop(line, 1, rev=3, duration_s=9.0), stop(line, 1, rev=1)])))
    assert r.json() == {"accepted": 1, "duplicates": 1}
    (only,) = store.get("/v1/stops", line=line).json()["stops"]
    assert only["rev"] == 3 and only["duration_s"] == 9.0


def test_same_id_on_two_lines_is_two_rows(store: StoreUnderTest) -> None:
    a, b = new_line(), new_line()
    rec_a = stop(a, 1)
    rec_b = msgspec.structs.replace(stop(b, 1), id=rec_a.id)
    assert store.post(encode_json(batch(a, [rec_a]))).json()["accepted"] == 1
    assert store.post(encode_json(batch(b, [rec_b]))).json()["accepted"] == 1
    assert len(rows(store.db_url, a)) == 1 and len(rows(store.db_url, b)) == 1


def test_records_are_kept_whole_and_read_back_unchanged(store: StoreUnderTest) -> None:
    line = new_line()
    kpi = KpiRecord(
        id=f"{line}:kpi:hour:1", site="p", area="a", line=line, machine="m", ts=format_ts(1_763_794_800),
        interval="hour", start=format_ts(1_763_791_200), end=format_ts(1_763_794_800), total_count=3600,
        good_count=3550, reject_count=50, availability=0.9, performance=0.95, quality=3550 / 3600,
        oee=0.9 * 0.95 * 3550 / 3600, products=["A"], final=True,
    )
    mr = MaintenanceRequestRecord(
        id=f"{line}:mr:1", site="p", area="a", line=line, machine="m", ts=format_ts(1_763_794_800),
        rule="repeated_stop", priority="high", summary="jam x5", stop_ids=[f"{line}:stop:1"],
        evidence={"count": 5, "durations_s": [3.0, 4.5]},
    )
    assert store.post(encode_json(batch(line, [kpi, mr]))).json()["accepted"] == 2
    got = store.get("/v1/kpis", line=line).json()["kpis"]
    assert [decode_json(encode_json(k), KpiRecord) for k in got] == [kpi]
    got = store.get("/v1/maintenance-requests", line=line).json()["maintenance_requests"]
    assert [decode_json(encode_json(m), MaintenanceRequestRecord) for m in got] == [mr]


def test_stored_batch_is_there_after_a_second_store_opens_the_database(
    store: StoreUnderTest, token_file: Path
) -> None:
    # A second store on the same database (the first one keeps running, as after a failover)
    # sees every record the first one answered 200 for.
    line = new_line()
    assert store.post(encode_json(batch(line, [stop(line, i) for i in range(3)]))).status_code == 200
    with start_store(store.db_url, token_file, StoreSettings()) as other:
        assert other.get("/v1/stops", line=line).json()["count"] == 3
        assert other.post(encode_json(batch(line, [stop(line, i) for i in range(3)]))).json() == {
            "accepted": 0, "duplicates": 3,
        }


def test_concurrent_batches_with_different_revs_keep_the_highest(store: StoreUnderTest) -> None:
    line = new_line()
    revs = list(range(8))
    random.Random(7).shuffle(revs)
    bodies = [encode_json(batch(line, [stop(line, i, rev=rev, duration_s=float(rev)) for i in range(40)]))
              for rev in revs]
    with ThreadPoolExecutor(len(bodies)) as pool:
        results = [r.json() for r in pool.map(store.post, bodies)]
    assert sum(r["accepted"] + r["duplicates"] for r in results) == 8 * 40
    got = store.get("/v1/stops", line=line).json()["stops"]
    assert len(got) == 40 and {(s["rev"], s["duration_s"]) for s in got} == {(7, 7.0)}


@pytest.mark.postgres
def test_store_keeps_serving_after_postgres_drops_its_connections(
    token_file: Path, pg_database: str
) -> None:
    with start_store(f"{pg_database}?schema=s_drop", token_file) as store:
        line = new_line()
        assert store.post(encode_json(batch(line, [stop(line, 0)]))).status_code == 200
        with psycopg.connect(pg_database, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE application_name = 'lineside-store' AND datname = current_database()")
        body = encode_json(batch(line, [stop(line, i) for i in range(1, 4)]))
        first = store.post(body)
        assert first.status_code in (200, 503), first.text  # 503: "not stored, retry"; never a 500
        assert store.post(body).status_code == 200
        assert store.get("/v1/stops", line=line).json()["count"] == 4  # reads reconnect by themselves
        assert len(rows(store.db_url, line)) == 4
