"""The client's side of the wire contract (proto/sheaf.proto), against
pyarrow Flight servers on loopback that play the server's part exactly as the
proto says, so each rule is checked on its own:

- keyword arguments become a typed `sheaf.v1.DatasetRequest` packed in a
  `google.protobuf.Any`; a URI is sent as it is;
- endpoint metadata (`EndpointMetadata`) and FlightInfo metadata
  (`FlightInfoMetadata`) are read binary for typed requests, as JSON for text;
- errors are classified by the `google.rpc.ErrorInfo` in their status
  details, and by their gRPC code when there is none;
- the endpoint policy: locations in order, the next one on UNAVAILABLE or
  when it cannot be connected to, "this server" for none and for
  `arrow-flight-reuse-connection://?`, one connection per location;
- actions in their typed form.

The real server is tested in test_client.py and test_reads.py.
"""

from __future__ import annotations

import gc
import pickle
import threading
from collections.abc import Callable

import pyarrow as pa
import pyarrow.flight as flight
import pytest
from google.protobuf import any_pb2, json_format
from google.rpc import error_details_pb2, status_pb2

import sheaf
from sheaf._proto import sheaf_pb2

from conftest import free_port

TOP = "ab" * 32
REUSE = "arrow-flight-reuse-connection://?"


def status_details(reason: str, code: int, message: str, **metadata: str) -> bytes:
    """A `google.rpc.Status` holding a Sheaf `ErrorInfo`, as the server sends it."""
    info = error_details_pb2.ErrorInfo(reason=reason, domain="sheaf.v1", metadata=metadata)
    packed = any_pb2.Any()
    packed.Pack(info)
    return status_pb2.Status(code=code, message=message, details=[packed]).SerializeToString()


def unpack(raw: bytes, into):
    packed = any_pb2.Any()
    packed.ParseFromString(raw)
    assert packed.Unpack(into), packed.type_url
    return into


class FakeSheaf(flight.FlightServerBase):
    """Answers GetFlightInfo with `self.endpoints` ((first_row, rows, locations)
    each), DoGet with the rows a ticket names (`first:rows`, column `id`), and
    the actions in their typed form. Records what it was sent."""

    def __init__(self, name: str = "a", **kwargs):
        super().__init__("grpc://127.0.0.1:0", **kwargs)
        self.name = name
        self.commands: list[bytes] = []
        self.gets: list[bytes] = []
        self.actions: list[tuple[str, bytes]] = []
        self.endpoints: list[tuple[int, int, list[str]]] = [(0, 5, [])]
        # Makes the exception DoGet raises (a new one each time: one kept
        # here would keep, through its traceback, the server and gRPC alive).
        self.get_error: Callable[[], Exception] | None = None
        # DoGet's batches hold `batch_rows` rows each; with `stream_error`, the
        # stream fails with it after sending `fail_after` rows (whole batches).
        self.batch_rows: int | None = None
        self.fail_after = 0
        self.stream_error: Callable[[], Exception] | None = None
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"grpc://127.0.0.1:{self.port}"

    def get_flight_info(self, context, descriptor):
        command = descriptor.command
        with self.lock:
            self.commands.append(command)
        packed = any_pb2.Any()
        try:
            typed = packed.ParseFromString(command) is not None and packed.Is(sheaf_pb2.DatasetRequest.DESCRIPTOR)
        except Exception:  # noqa: BLE001 - a URI's text
            typed = False
        request = sheaf_pb2.DatasetRequest()
        if typed:
            packed.Unpack(request)
        info_meta = sheaf_pb2.FlightInfoMetadata(
            package=request.package or "x/y", top_hash=TOP, path=request.path, pinned_uri=f"sheaf://x/y@{TOP}/t"
        )
        endpoints = []
        for i, (first, rows, locations) in enumerate(self.endpoints):
            meta = sheaf_pb2.EndpointMetadata(partition=i, first_row=first, table_rows=rows)
            endpoints.append(
                flight.FlightEndpoint(f"{first}:{rows}".encode(), locations, app_metadata=encode(meta, typed))
            )
        total = sum(rows for _, rows, _ in self.endpoints)
        schema = pa.schema([("id", pa.int64())])
        return flight.FlightInfo(
            schema, descriptor, endpoints, total, -1, ordered=True, app_metadata=encode(info_meta, typed)
        )

    def do_get(self, context, ticket):
        with self.lock:
            self.gets.append(ticket.ticket)
        if self.get_error is not None:
            raise self.get_error()
        first, rows = map(int, ticket.ticket.decode().split(":"))
        table = pa.table({"id": pa.array(range(first, first + rows), pa.int64())})
        if self.batch_rows is None and self.stream_error is None:
            return flight.RecordBatchStream(table)
        batches = table.to_batches(max_chunksize=self.batch_rows or rows)
        error, fail_after = self.stream_error, self.fail_after

        def stream():
            sent = 0
            for batch in batches:
                if error is not None and sent >= fail_after:
                    raise error()
                yield batch
                sent += batch.num_rows
            if error is not None:
                raise error()

        return flight.GeneratorStream(table.schema, stream())

    def do_action(self, context, action):
        body = action.body.to_pybytes()
        with self.lock:
            self.actions.append((action.type, body))
        answers = {
            "resolve": (sheaf_pb2.ResolveRequest, sheaf_pb2.ResolveResponse(package="x/y", top_hash=TOP)),
            "list_packages": (
                sheaf_pb2.ListPackagesRequest,
                sheaf_pb2.ListPackagesResponse(
                    packages=[sheaf_pb2.PackageSummary(name="x/y", latest=TOP), sheaf_pb2.PackageSummary(name="x/z")]
                ),
            ),
            "list_revisions": (
                sheaf_pb2.ListRevisionsRequest,
                sheaf_pb2.ListRevisionsResponse(
                    revisions=[
                        sheaf_pb2.RevisionSummary(top_hash=TOP, timestamp=1700000000, message="m", tags=["latest"]),
                        sheaf_pb2.RevisionSummary(top_hash="cd" * 32, timestamp=1600000000),
                    ]
                ),
            ),
            "browse": (
                sheaf_pb2.BrowseRequest,
                sheaf_pb2.BrowseResponse(
                    package="x/y",
                    top_hash=TOP,
                    user_meta='{"team": "ml", "n": [1, 2]}',
                    entries=[
                        sheaf_pb2.Entry(
                            logical_key="a.txt",
                            size=3,
                            hash=sheaf_pb2.EntryHash(type="SHA256", value="00"),
                            meta='{"k": "v"}',
                        ),
                        sheaf_pb2.Entry(
                            logical_key="b.txt", size=4, hash=sheaf_pb2.EntryHash(type="SHA256", value="1")
                        ),
                    ],
                ),
            ),
            "list_tables": (
                sheaf_pb2.ListTablesRequest,
                sheaf_pb2.ListTablesResponse(
                    package="x/y",
                    top_hash=TOP,
                    tables=[sheaf_pb2.TableSummary(path="t.parquet", format="parquet", uri=f"sheaf://x/y@{TOP}/t")],
                ),
            ),
        }
        if action.type not in answers:
            raise flight.FlightServerError(
                "unknown action", extra_info=status_details("INVALID_REQUEST", 3, f"unknown action {action.type}")
            )
        request_type, response = answers[action.type]
        unpack(body, request_type())  # the body is the typed request
        packed = any_pb2.Any()
        packed.Pack(response)
        yield flight.Result(packed.SerializeToString())


def encode(msg, typed: bool) -> bytes:
    if typed:
        return msg.SerializeToString()
    return json_format.MessageToJson(msg, preserving_proto_field_name=True).encode()


def stop(server: FakeSheaf) -> None:
    server.get_error = server.stream_error = None
    server.shutdown()
    del server
    gc.collect()  # the last reference to a server may sit in a cycle; gRPC stops once it is gone


@pytest.fixture
def fake():
    server = FakeSheaf()
    try:
        yield server
    finally:
        stop(server)


@pytest.fixture
def fake_client(fake):
    c = sheaf.connect(fake.url, timeout=10, read_timeout=10)
    yield c
    c.close()


# ---------------------------------------------------------------------------
# Dataset requests
# ---------------------------------------------------------------------------


def test_keywords_become_a_typed_request(fake, fake_client):
    ds = fake_client.dataset(
        package="x/y",
        tag="v1",
        path="/tables/t.parquet",
        columns=["id", "x"],
        filter="a = 'b&c'",
        limit=10,
        sample=0.5,
        seed=3,
        partitions=4,
        compression="zstd",
        content=False,
    )
    packed = any_pb2.Any()
    packed.ParseFromString(fake.commands[-1])
    assert packed.type_url == "type.googleapis.com/sheaf.v1.DatasetRequest"
    sent = unpack(fake.commands[-1], sheaf_pb2.DatasetRequest())
    assert sent == sheaf_pb2.DatasetRequest(
        package="x/y",
        tag="v1",
        path="tables/t.parquet",
        columns=["id", "x"],
        filter="a = 'b&c'",
        limit=10,
        sample=0.5,
        seed=3,
        partitions=4,
        compression="zstd",
    )
    assert ds.request == sent and ds.uri == ds.pinned_uri == f"sheaf://x/y@{TOP}/t"
    assert ds.top_hash == TOP and ds.package == "x/y" and ds.path == "tables/t.parquet"
    # A revision, and parameters left out (absent, not zero).
    fake_client.dataset(package="x/y", revision="abcdef", path="t")
    sent = unpack(fake.commands[-1], sheaf_pb2.DatasetRequest())
    assert sent.WhichOneof("revision") == "top_hash" and sent.top_hash == "abcdef"
    assert not sent.HasField("limit") and not sent.HasField("sample") and not sent.HasField("partitions")


def test_replan_changes_the_pinned_typed_request(fake, fake_client):
    ds = fake_client.dataset(package="x/y", tag="v1", path="t", columns=["id"], limit=5)
    again = ds.replan(partitions=8, limit=None)
    sent = unpack(fake.commands[-1], sheaf_pb2.DatasetRequest())
    assert sent == sheaf_pb2.DatasetRequest(package="x/y", top_hash=TOP, path="t", columns=["id"], partitions=8)
    assert again.request == sent
    with pytest.raises(sheaf.InvalidArgumentError, match="unknown dataset parameter 'nope'") as e:
        ds.replan(nope=1)
    assert e.value.code == "CLIENT"
    with pytest.raises(sheaf.InvalidArgumentError, match="seed") as e:
        fake_client.dataset(package="x/y", seed=-1)
    assert e.value.code == "CLIENT"
    with pytest.raises(sheaf.InvalidArgumentError, match="revision= or tag="):
        fake_client.dataset(package="x/y", revision="abcdef", tag="v1")


def test_which_parameters_a_request_sets():
    from sheaf import _request

    typed = _request.build("x/y", query={"columns": ["a"], "seed": 3, "limit": 0, "content": True, "filter": None})
    text = "sheaf://x/y?columns=a&seed=3&limit=0&content=true"
    for request in (typed, text):
        assert {name for name in _request.QUERY if _request.given(request, name)} == {
            "columns",
            "seed",
            "limit",
            "content",
        }
        assert _request.partitions(request) is None
        assert _request.partitions(_request.change(request, {"partitions": 7})) == 7
        assert not _request.given(_request.change(request, {"limit": None, "content": None}), "limit")


def test_a_uri_is_sent_as_it_is(fake, fake_client):
    for uri in ("sheaf://x/y/t?columns=id", "x/y:v1/t", "sheaf://not a valid uri?%%"):
        ds = fake_client.dataset(uri)
        assert fake.commands[-1] == uri.encode() and ds.request == ds.uri == uri
    # Keyword parameters are appended to its query; the server judges them.
    fake_client.dataset("sheaf://x/y/t?limit=3", limit=4, columns=["a", "b"], filter="x = 'a&b'")
    assert fake.commands[-1] == b"sheaf://x/y/t?limit=3&columns=a%2Cb&filter=x%20%3D%20%27a%26b%27&limit=4"
    fake_client.dataset("sheaf://x/y/t", partitions=2)
    assert fake.commands[-1] == b"sheaf://x/y/t?partitions=2"


def test_endpoint_metadata_binary_for_typed_and_json_for_text(fake, fake_client):
    fake.endpoints = [(0, 5, []), (5, 7, []), (12, 1, [])]
    for ds in (fake_client.dataset(package="x/y", path="t"), fake_client.dataset("sheaf://x/y/t")):
        assert [(e.index, e.first_row, e.table_rows) for e in ds.endpoints] == [(0, 0, 5), (1, 5, 7), (2, 12, 1)]
        assert ds.num_rows == 13 and ds.endpoint_rows() == [5, 7, 1]
        assert ds.to_table().column("id").to_pylist() == list(range(13))
    # Rows that do not add up are counted instead of trusted.
    fake.endpoints = [(0, 5, []), (6, 7, [])]
    assert fake_client.dataset(package="x/y", path="t")._planned_rows() is None


def test_metadata_in_the_wrong_form_is_an_error(fake, fake_client, monkeypatch):
    right = encode
    monkeypatch.setattr("test_contract.encode", lambda msg, typed: right(msg, not typed))
    with pytest.raises(sheaf.SheafError, match="not a JSON sheaf.v1.FlightInfoMetadata") as e:
        fake_client.dataset("sheaf://x/y/t")
    assert e.value.code == "CLIENT"


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------

REASONS = [
    ("INVALID_REQUEST", 3, sheaf.InvalidArgumentError),
    ("UNKNOWN_COLUMN", 3, sheaf.InvalidArgumentError),
    ("EVALUATION_FAILED", 3, sheaf.InvalidArgumentError),
    ("AMBIGUOUS_HASH", 3, sheaf.InvalidArgumentError),
    ("INVALID_MANIFEST", 3, sheaf.InvalidArgumentError),
    ("NOT_FOUND", 5, sheaf.NotFoundError),
    ("UNAUTHENTICATED", 16, sheaf.UnauthenticatedError),
    ("PERMISSION_DENIED", 7, sheaf.PermissionDeniedError),
    ("FORBIDDEN_LOCATION", 7, sheaf.PermissionDeniedError),
    ("INTEGRITY", 15, sheaf.DataLossError),
    ("CONFLICT", 6, sheaf.SheafError),
    ("LATEST_MOVED", 10, sheaf.SheafError),
    ("RESOURCE_EXHAUSTED", 8, sheaf.SheafError),
    ("UNAVAILABLE", 14, sheaf.UnavailableError),
    ("UNIMPLEMENTED", 12, sheaf.UnimplementedError),
    ("CANCELLED", 1, sheaf.SheafError),
    ("INTERNAL", 13, sheaf.SheafError),
    ("DEADLINE_EXCEEDED", 4, sheaf.DeadlineExceededError),
    ("ALREADY_EXISTS", 6, sheaf.AlreadyExistsError),
    ("SESSION_NOT_FOUND", 5, sheaf.SessionNotFoundError),
    ("SCHEMA_MISMATCH", 9, sheaf.SchemaMismatchError),
]
CODES = dict(
    enumerate(
        "OK CANCELLED UNKNOWN INVALID_ARGUMENT DEADLINE_EXCEEDED NOT_FOUND ALREADY_EXISTS PERMISSION_DENIED "
        "RESOURCE_EXHAUSTED FAILED_PRECONDITION ABORTED OUT_OF_RANGE UNIMPLEMENTED INTERNAL UNAVAILABLE DATA_LOSS "
        "UNAUTHENTICATED".split()
    )
)


def test_every_reason_has_its_class():
    assert sorted(r for r, _, _ in REASONS) == sorted(
        n for n in sheaf_pb2.ErrorReason.keys() if n != "ERROR_REASON_UNSPECIFIED"
    )


@pytest.mark.parametrize("reason,code,cls", REASONS)
def test_errors_are_classified_by_their_details(fake, fake_client, reason, code, cls):
    fake.get_error = lambda: flight.FlightServerError(
        "ignored",
        extra_info=status_details(
            reason, code, "column nope not in t", package="x/y", top_hash=TOP, path="t", column="nope"
        ),
    )
    ds = fake_client.dataset(package="x/y", path="t")
    with pytest.raises(cls) as e:
        ds.to_table()
    err = e.value
    assert type(err) is cls
    assert err.reason == reason and err.code == CODES[code]
    assert (err.package, err.top_hash, err.path, err.column) == ("x/y", TOP, "t", "nope")
    assert err.server_message == "column nope not in t" and str(err).endswith(": column nope not in t")
    assert "reading sheaf://x/y@" in str(err)
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is cls and str(again) == str(err)
    assert vars(again) == vars(err)


def test_details_name_only_what_they_are_about(fake, fake_client):
    fake.get_error = lambda: flight.FlightServerError("x", extra_info=status_details("NOT_FOUND", 5, "no t", path="t"))
    with pytest.raises(sheaf.NotFoundError) as e:
        fake_client.dataset(package="x/y", path="t").to_table()
    assert e.value.path == "t" and e.value.package is None and e.value.column is None


def test_details_of_another_domain_are_ignored(fake, fake_client):
    info = error_details_pb2.ErrorInfo(reason="NOT_FOUND", domain="example.com")
    packed = any_pb2.Any()
    packed.Pack(info)
    details = status_pb2.Status(code=5, message="m", details=[packed]).SerializeToString()
    fake.get_error = lambda: flight.FlightUnavailableError("down", extra_info=details)
    with pytest.raises(sheaf.UnavailableError) as e:
        fake_client.dataset(package="x/y", path="t").to_table()
    assert e.value.reason is None and e.value.code == "UNAVAILABLE"


@pytest.mark.parametrize(
    "error,message,cls,code",
    [
        (KeyError, "no such table", sheaf.NotFoundError, "NOT_FOUND"),
        (ValueError, "bad filter", sheaf.InvalidArgumentError, "INVALID_ARGUMENT"),
        (flight.FlightUnavailableError, "storage down", sheaf.UnavailableError, "UNAVAILABLE"),
        (flight.FlightUnauthenticatedError, "who are you", sheaf.UnauthenticatedError, "UNAUTHENTICATED"),
        (flight.FlightUnauthorizedError, "not yours", sheaf.PermissionDeniedError, "PERMISSION_DENIED"),
        (NotImplementedError, "no", sheaf.UnimplementedError, "UNIMPLEMENTED"),
        (flight.FlightInternalError, "oops", sheaf.SheafError, "INTERNAL"),
    ],
)
def test_errors_without_details_fall_back_to_the_grpc_code(fake, fake_client, error, message, cls, code):
    """A server older than the details: the class follows the gRPC status."""
    fake.get_error = lambda: error(message)
    with pytest.raises(sheaf.SheafError) as e:
        fake_client.dataset(package="x/y", path="t").to_table()
    assert type(e.value) is cls and e.value.code == code and e.value.reason is None
    assert message in e.value.server_message and e.value.package is None


# ---------------------------------------------------------------------------
# The endpoint policy
# ---------------------------------------------------------------------------


@pytest.fixture
def other():
    server = FakeSheaf("b")
    try:
        yield server
    finally:
        stop(server)


def test_locations_in_order_falling_back_when_unreachable(fake, other, fake_client):
    dead = f"grpc://127.0.0.1:{free_port()}"
    fake.endpoints = [(0, 3, [dead, other.url]), (3, 2, [other.url, fake.url]), (5, 4, [])]
    ds = fake_client.dataset(package="x/y", path="t")
    assert ds.endpoints[0].locations == (dead, other.url)
    assert ds.to_table(max_workers=1).column("id").to_pylist() == list(range(9))
    assert other.gets == [b"0:3", b"3:2"]  # the first reachable location, in order
    assert fake.gets == [b"5:4"]  # no location: this server


def test_no_location_and_reuse_connection_mean_this_server(fake, fake_client):
    fake.endpoints = [(0, 2, []), (2, 2, [REUSE])]
    ds = fake_client.dataset(package="x/y", path="t")
    assert ds.to_table(max_workers=1).num_rows == 4
    assert fake.gets == [b"0:2", b"2:2"]
    assert fake_client.flight_client(REUSE) is fake_client.flight_client()
    assert set(fake_client._flights) == {fake.url}


def test_one_connection_per_location_for_the_client(fake, other, fake_client):
    fake.endpoints = [(0, 1, [other.url]), (1, 1, [other.url]), (2, 1, [fake.url])]
    ds = fake_client.dataset(package="x/y", path="t")
    ds.to_table(max_workers=3)
    first = dict(fake_client._flights)
    assert set(first) == {fake.url, other.url}
    ds.to_table(max_workers=3)
    fake_client.dataset(package="x/y", path="t").to_table()
    assert fake_client._flights == first and all(fake_client._flights[k] is first[k] for k in first)
    assert len(other.gets) == 6 and len(fake.gets) == 3
    fake_client.close()  # closing drops them; the next read opens them again
    assert fake_client._flights == {}
    assert ds.to_table().num_rows == 3


def test_other_errors_do_not_fall_back(fake, other, fake_client):
    other.get_error = lambda: flight.FlightServerError("x", extra_info=status_details("NOT_FOUND", 5, "gone"))
    fake.endpoints = [(0, 3, [other.url, fake.url])]
    with pytest.raises(sheaf.NotFoundError, match="gone"):
        fake_client.dataset(package="x/y", path="t").to_table()
    assert fake.gets == []
    # UNAVAILABLE falls back.
    other.get_error = lambda: flight.FlightServerError("x", extra_info=status_details("UNAVAILABLE", 14, "busy"))
    assert fake_client.dataset(package="x/y", path="t").to_table().num_rows == 3
    assert fake.gets == [b"0:3"]


def test_a_location_that_cannot_be_opened_falls_back(fake, fake_client):
    fake.endpoints = [(0, 3, ["nope+scheme://127.0.0.1:1", fake.url])]
    assert fake_client.dataset(package="x/y", path="t").to_table().num_rows == 3
    assert fake.gets == [b"0:3"]


def test_every_location_unavailable(fake, fake_client):
    dead = [f"grpc://127.0.0.1:{free_port()}" for _ in range(2)]
    fake.endpoints = [(0, 3, dead)]
    with pytest.raises(sheaf.UnavailableError) as e:
        fake_client.dataset(package="x/y", path="t").to_table()
    assert dead[1] in str(e.value)


# ---------------------------------------------------------------------------
# The endpoint policy in the middle of a stream (replicas; test_failover.py
# kills real servers)
# ---------------------------------------------------------------------------


@pytest.fixture
def third():
    server = FakeSheaf("c")
    try:
        yield server
    finally:
        stop(server)


def unavailable():
    return flight.FlightUnavailableError("Stream removed (Socket closed)")


def ids_of(batches) -> list[int]:
    return [i for b in batches for i in b.column("id").to_pylist()]


@pytest.mark.parametrize(
    ("fail_after", "a_rows", "b_rows"),
    [
        (8, 4, 5),  # the cut inside B's second batch: sliced
        (10, 5, 5),  # on a batch boundary of both
        (0, 4, 5),  # before the first batch
        (23, 4, 5),  # after the last row, before the end of the stream
    ],
)
def test_a_replica_failing_mid_stream_resumes_at_the_next_location(
    fake, other, fake_client, fail_after, a_rows, b_rows
):
    fake.endpoints = [(0, 23, [other.url, fake.url]), (23, 4, [other.url, fake.url])]
    other.batch_rows, other.fail_after, other.stream_error = a_rows, fail_after, unavailable
    fake.batch_rows = b_rows
    ds = fake_client.dataset(package="x/y", path="t")
    assert ids_of(ds.to_batches(progress=False)) == list(range(27))
    assert other.gets == [b"0:23", b"23:4"] and fake.gets == [b"0:23", b"23:4"]
    assert ds.to_table(max_workers=2).column("id").to_pylist() == list(range(27))


def test_transport_failures_reported_as_internal_fail_over(fake, other, fake_client):
    fake.endpoints = [(0, 20, [other.url, fake.url])]
    other.batch_rows, other.fail_after = 3, 6
    other.stream_error = lambda: flight.FlightInternalError("Received RST_STREAM with error code 2")
    assert fake_client.dataset(package="x/y", path="t").to_table().column("id").to_pylist() == list(range(20))
    assert fake.gets == [b"0:20"]


@pytest.mark.parametrize(
    ("error", "cls"),
    [
        (lambda: flight.FlightServerError("x", extra_info=status_details("INTEGRITY", 15, "hash mismatch")), None),
        (lambda: flight.FlightServerError("x", extra_info=status_details("INTERNAL", 13, "a bug")), None),
        (lambda: flight.FlightTimedOutError("query timeout"), sheaf.DeadlineExceededError),
        (lambda: flight.FlightInternalError("a bug without details"), sheaf.SheafError),
        (lambda: pa.ArrowInvalid("bad request"), sheaf.InvalidArgumentError),
    ],
)
def test_sheaf_errors_in_the_middle_of_a_stream_are_raised_not_retried(fake, other, fake_client, error, cls):
    fake.endpoints = [(0, 20, [other.url, fake.url])]
    other.batch_rows, other.fail_after, other.stream_error = 4, 8, error
    got = []
    with pytest.raises(sheaf.SheafError) as e:
        for batch in fake_client.dataset(package="x/y", path="t").to_batches(progress=False):
            got.append(batch)
    assert not isinstance(e.value, sheaf.UnavailableError)
    if cls is not None:
        assert isinstance(e.value, cls)
    else:
        assert e.value.reason in ("INTEGRITY", "INTERNAL")
    assert ids_of(got) == list(range(8))
    assert fake.gets == [], "a Sheaf error was retried at the next location"


def test_each_location_once_then_one_error_naming_them(fake, other, third, fake_client):
    dead = f"grpc://127.0.0.1:{free_port()}"
    locations = [other.url, third.url, dead, other.url]  # other listed twice: tried once
    fake.endpoints = [(0, 30, locations)]
    other.batch_rows, other.fail_after, other.stream_error = 4, 8, unavailable
    third.batch_rows, third.fail_after, third.stream_error = 5, 15, unavailable
    got = []
    with pytest.raises(sheaf.UnavailableError) as e:
        for batch in fake_client.dataset(package="x/y", path="t").to_batches(progress=False):
            got.append(batch)
    assert ids_of(got) == list(range(15)), "rows lost or repeated before the failure"
    message = str(e.value)
    assert "endpoint 0" in message and "every location failed" in message
    for where in (other.url, third.url, dead):
        assert message.count(where) == 1, f"{where} not named once in {message}"
    assert "after 8 rows" in message and "after 15 rows" in message
    assert other.gets == [b"0:30"] and third.gets == [b"0:30"] and fake.gets == []


def test_one_location_failing_mid_stream_raises_its_own_error(fake, fake_client):
    fake.endpoints = [(0, 10, [])]
    fake.batch_rows, fake.fail_after, fake.stream_error = 3, 6, unavailable
    with pytest.raises(sheaf.UnavailableError, match="Socket closed") as e:
        fake_client.dataset(package="x/y", path="t").to_table()
    assert "every location" not in str(e.value)
    assert fake.gets == [b"0:10"], "the one location was tried again"


# ---------------------------------------------------------------------------
# Actions
# ---------------------------------------------------------------------------


def test_actions_are_typed(fake, fake_client):
    assert fake_client.resolve("x/y:v1") == TOP
    name, body = fake.actions[-1]
    assert name == "resolve" and unpack(body, sheaf_pb2.ResolveRequest()).ref == "x/y:v1"
    assert fake_client.list_packages("x/*") == [sheaf.PackageInfo("x/y", TOP), sheaf.PackageInfo("x/z", None)]
    assert unpack(fake.actions[-1][1], sheaf_pb2.ListPackagesRequest()).pattern == "x/*"
    revs = fake_client.list_revisions("x/y")
    assert revs == [
        sheaf.RevisionInfo(TOP, 1700000000, "m", ("latest",)),
        sheaf.RevisionInfo("cd" * 32, 1600000000, None, ()),
    ]
    rev = fake_client.browse("x/y", prefix="a")
    assert unpack(fake.actions[-1][1], sheaf_pb2.BrowseRequest()) == sheaf_pb2.BrowseRequest(ref="x/y", prefix="a")
    assert rev.user_meta == {"team": "ml", "n": [1, 2]} and rev.message is None
    assert rev.entries == (
        sheaf.Entry("a.txt", 3, "SHA256", "00", {"k": "v"}),
        sheaf.Entry("b.txt", 4, "SHA256", "1", {}),
    )
    assert fake_client.list_tables("x/y") == [sheaf.TableInfo("t.parquet", "parquet", f"sheaf://x/y@{TOP}/t")]
    with pytest.raises(sheaf.InvalidArgumentError, match="unknown action") as e:
        fake_client.action("nope")
    assert e.value.reason == "INVALID_REQUEST"


def test_files_resolve_then_read_the_manifest_typed(fake, fake_client):
    with pytest.raises(KeyError):  # the fake's table has no file columns
        list(fake_client.files("x/y:v1", prefix="docs/", keys=["docs/it's"]))
    assert unpack(fake.actions[-1][1], sheaf_pb2.ResolveRequest()).ref == "x/y:v1"
    sent = unpack(fake.commands[-1], sheaf_pb2.DatasetRequest())
    assert sent == sheaf_pb2.DatasetRequest(
        package="x/y",
        top_hash=TOP,
        content=True,
        filter="starts_with(logical_key, 'docs/') AND logical_key IN ('docs/it''s')",
    )


def test_typed_datasets_pickle(fake, fake_client):
    """DataLoader workers get the dataset pickled, typed request and all."""
    fake.endpoints = [(0, 2, []), (2, 3, [])]
    ds = fake_client.dataset(package="x/y", path="t", columns=["id"])
    copy = pickle.loads(pickle.dumps(ds))
    assert copy.request == ds.request and copy.endpoints == ds.endpoints
    assert copy.to_table().column("id").to_pylist() == list(range(5))
    assert copy.replan(limit=1).request.limit == 1
    copy.client.close()


# A gRPC server that is not an Arrow one (as Sheaf's, written with tonic):
# its errors carry `grpc-status-details-bin` but none of Arrow's own status
# trailers, so pyarrow leaves `FlightError.extra_info` empty and the client
# reads the details from the trailers it is handed. It runs in a process of
# its own (grpcio's threads stay out of this one, where the fork guard counts
# gRPC threads).
GRPC_STUB = r"""
import sys, time
from concurrent import futures
import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

def details(code, reason, **metadata):
    info = error_details_pb2.ErrorInfo(reason=reason, domain="sheaf.v1", metadata=metadata)
    packed = any_pb2.Any()
    packed.Pack(info)
    return status_pb2.Status(code=code, details=[packed]).SerializeToString()

def get_flight_info(request, context):
    context.set_trailing_metadata((("grpc-status-details-bin", details(5, "NOT_FOUND", package="x/y")),))
    context.abort(grpc.StatusCode.NOT_FOUND, "package x/y not found")

def do_action(request, context):
    trailer = details(3, "UNKNOWN_COLUMN", package="x/y", path="t", column="nope")
    context.set_trailing_metadata((("grpc-status-details-bin", trailer),))
    context.abort(grpc.StatusCode.INVALID_ARGUMENT, "unknown column nope")
    yield b""

same = lambda b: b
handler = grpc.method_handlers_generic_handler("arrow.flight.protocol.FlightService", {
    "GetFlightInfo": grpc.unary_unary_rpc_method_handler(get_flight_info, same, same),
    "DoAction": grpc.unary_stream_rpc_method_handler(do_action, same, same),
})
server = grpc.server(futures.ThreadPoolExecutor(2))
server.add_generic_rpc_handlers((handler,))
print(server.add_insecure_port("127.0.0.1:0"), flush=True)
server.start()
sys.stdin.read()  # until the test closes it
"""


@pytest.fixture
def grpc_stub(tmp_path):
    import subprocess
    import sys

    script = tmp_path / "stub.py"
    script.write_text(GRPC_STUB)
    proc = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())
        yield f"grpc://127.0.0.1:{port}"
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)


def test_details_in_grpc_trailers_without_arrow_status(grpc_stub):
    c = sheaf.connect(grpc_stub, timeout=10)
    with pytest.raises(sheaf.NotFoundError) as e:
        c.dataset(package="x/y", path="t")
    assert e.value.reason == "NOT_FOUND" and e.value.package == "x/y" and e.value.code == "NOT_FOUND"
    assert e.value.server_message == "package x/y not found"
    with pytest.raises(sheaf.InvalidArgumentError) as e:
        c.resolve("x/y")
    assert e.value.reason == "UNKNOWN_COLUMN" and (e.value.path, e.value.column) == ("t", "nope")
    assert e.value.server_message == "unknown column nope" and e.value.code == "INVALID_ARGUMENT"
    c.close()


# ---------------------------------------------------------------------------
# Writes: begin_write, DoPut parts, commit_write / abort_write, lineage
# ---------------------------------------------------------------------------


class FakeWrites(FakeSheaf):
    """Plays the write side of the contract: sessions keyed by idempotency
    key, DoPut parts answered with a binary PutResponse, commits answered
    with one top hash per session (a retried commit gets the same one).
    `lose_commits` commits are carried out and then answered UNAVAILABLE, as
    when the answer is lost on the way."""

    def __init__(self):
        super().__init__("w")
        self.begins: list[sheaf_pb2.BeginWriteRequest] = []
        self.puts: list[tuple[sheaf_pb2.DatasetRequest, int]] = []
        self.commits: list[sheaf_pb2.CommitWriteRequest] = []
        self.aborts: list[str] = []
        self.sessions: dict[str, str] = {}  # idempotency key -> session
        self.committed: dict[str, str] = {}  # session -> top hash
        self.lose_commits = 0
        self.lose_puts = 0  # part uploads staged and then answered UNAVAILABLE

    def do_put(self, context, descriptor, reader, writer):
        request = unpack(descriptor.command, sheaf_pb2.DatasetRequest())
        rows = sum(chunk.data.num_rows for chunk in reader)
        with self.lock:
            self.puts.append((request, rows))
            part_id = f"p{len(self.puts)}"
            lose, self.lose_puts = self.lose_puts > 0, max(0, self.lose_puts - 1)
        if lose:
            raise flight.FlightUnavailableError("connection lost")
        writer.write(
            sheaf_pb2.PutResponse(
                package=request.package, path=request.path, session=request.session, part_id=part_id, rows=rows
            ).SerializeToString()
        )

    def do_action(self, context, action):
        body = action.body.to_pybytes()
        if action.type == "begin_write":
            request = unpack(body, sheaf_pb2.BeginWriteRequest())
            with self.lock:
                self.begins.append(request)
                session = self.sessions.setdefault(request.idempotency_key, f"s{len(self.sessions) + 1}")
            answer = sheaf_pb2.BeginWriteResponse(session=session, package=request.package, expires_at=1)
        elif action.type == "commit_write":
            request = unpack(body, sheaf_pb2.CommitWriteRequest())
            with self.lock:
                self.commits.append(request)
                top = self.committed.setdefault(request.session, f"{len(self.committed) + 1:064x}")
                lose, self.lose_commits = self.lose_commits > 0, max(0, self.lose_commits - 1)
            if lose:
                raise flight.FlightUnavailableError("connection lost")
            answer = sheaf_pb2.CommitWriteResponse(
                package="x/y", top_hash=top, uris=[f"sheaf://x/y@{top}/t.parquet"], rows=7
            )
        elif action.type == "abort_write":
            request = unpack(body, sheaf_pb2.AbortWriteRequest())
            with self.lock:
                self.aborts.append(request.session)
            answer = sheaf_pb2.AbortWriteResponse()
        elif action.type == "lineage":
            request = unpack(body, sheaf_pb2.LineageRequest())
            answer = sheaf_pb2.LineageResponse(
                nodes=[
                    sheaf_pb2.LineageNode(
                        package="x/y",
                        top_hash=TOP,
                        depth=0,
                        message="m",
                        principal="alice",
                        tool="sheaf-python 0.1.0",
                        inputs=[sheaf_pb2.LineageInput(package="a/b", top_hash="cd" * 32, uri="sheaf://a/b@cd")],
                    ),
                    sheaf_pb2.LineageNode(package="a/b", top_hash="cd" * 32, depth=request.depth, missing="gone"),
                ]
            )
        else:
            yield from super().do_action(context, action)
            return
        packed = any_pb2.Any()
        packed.Pack(answer)
        yield flight.Result(packed.SerializeToString())


@pytest.fixture
def writes():
    server = FakeWrites()
    try:
        yield server
    finally:
        stop(server)


@pytest.fixture
def writes_client(writes):
    c = sheaf.connect(writes.url, timeout=10, read_timeout=10)
    yield c
    c.close()


def test_a_write_is_begin_one_typed_put_and_commit(writes, writes_client):
    table = pa.table({"id": pa.array(range(7), pa.int64())})
    result = writes_client.write(
        "sheaf://x/y@abcdef/dir/t.parquet",
        table,
        message="m",
        metadata={"k": 1},
        mode="overwrite",
        derived_from=sheaf.LineageInput("a/b", "cd" * 32, "sheaf://a/b@cd/t"),
    )
    (begin,) = writes.begins
    assert begin.package == "x/y" and begin.base == "abcdef" and begin.message == "m"
    assert begin.mode == sheaf_pb2.WRITE_MODE_OVERWRITE and begin.metadata == '{"k": 1}'
    assert begin.tool == f"sheaf-python {sheaf.__version__}" and len(begin.idempotency_key) >= 16
    assert list(begin.inputs) == [sheaf_pb2.LineageInput(package="a/b", top_hash="cd" * 32, uri="sheaf://a/b@cd/t")]
    assert not begin.HasField("ttl_seconds")
    ((put, rows),) = writes.puts
    assert put == sheaf_pb2.DatasetRequest(package="x/y", path="dir/t.parquet", session="s1") and rows == 7
    (commit,) = writes.commits
    assert commit == sheaf_pb2.CommitWriteRequest(session="s1", parts=["p1"])  # the parts it uploaded, listed
    assert result == f"{1:064x}" and result.uri == f"sheaf://x/y@{result}/t.parquet" and result.rows == 7
    assert writes.aborts == []


def test_writer_parts_positions_and_defaults(writes, writes_client):
    with writes_client.writer("x/y") as w:
        w.write("/f/", pa.table({"a": [1]}), part=3)
        w.write("f", [pa.record_batch({"a": [2, 3]})])
    begin = writes.begins[0]
    assert begin.mode == sheaf_pb2.WRITE_MODE_APPEND and not begin.HasField("base")
    assert not begin.HasField("message") and not begin.HasField("metadata") and list(begin.inputs) == []
    assert [(p.path, p.HasField("part"), p.part, rows) for p, rows in writes.puts] == [
        ("f", True, 3, 1),
        ("f", False, 0, 2),
    ]
    assert list(writes.commits[0].parts) == ["p1", "p2"]


def test_big_batches_are_sent_in_slices(writes, writes_client, monkeypatch):
    monkeypatch.setattr(sheaf.write, "MAX_BATCH_ROWS", 1000)
    writes_client.write("x/y/t.parquet", pa.table({"a": pa.array(range(4500), pa.int64())}))
    assert writes.puts[0][1] == 4500


def test_a_lost_commit_answer_is_retried_in_the_same_session(writes, writes_client, monkeypatch):
    monkeypatch.setattr(sheaf.write, "BACKOFF", (0.01,))
    writes.lose_commits = 2
    with writes_client.writer("x/y") as w:
        w.write("t.parquet", pa.table({"a": [1]}))
    assert [c.session for c in writes.commits] == ["s1", "s1", "s1"]
    assert w.top_hash == writes.committed["s1"] and len(writes.committed) == 1


def test_a_lost_upload_of_data_in_memory_is_sent_again(writes, writes_client, monkeypatch):
    monkeypatch.setattr(sheaf.write, "BACKOFF", (0.01,))
    writes.lose_puts = 1
    with writes_client.writer("x/y") as w:
        part = w.write("t.parquet", pa.table({"a": [1, 2]}))
    assert part.part_id == "p2" and [rows for _, rows in writes.puts] == [2, 2]
    assert list(writes.commits[0].parts) == ["p2"]  # the part staged by the lost upload is left out
    writes.lose_puts = 1
    with pytest.raises(sheaf.UnavailableError):  # a stream cannot be sent again
        with writes_client.writer("x/y") as w:
            w.write("t.parquet", iter([pa.record_batch({"a": [1]})]))
    assert writes.aborts == [w.session]


def test_commit_gives_up_after_its_attempts(writes, writes_client, monkeypatch):
    monkeypatch.setattr(sheaf.write, "BACKOFF", (0.01,))
    writes.lose_commits = 100
    w = writes_client.writer("x/y")
    w.write("t.parquet", pa.table({"a": [1]}))
    with pytest.raises(sheaf.UnavailableError, match="connection lost"):
        w.commit()
    assert len(writes.commits) == sheaf.write.ATTEMPTS and w.state == "open"


def test_an_exception_in_the_block_aborts(writes, writes_client):
    with pytest.raises(ZeroDivisionError):
        with writes_client.writer("x/y") as w:
            w.write("t.parquet", pa.table({"a": [1]}))
            1 / 0  # noqa: B018
    assert writes.aborts == ["s1"] and writes.commits == [] and w.state == "aborted"
    with pytest.raises(ZeroDivisionError):
        with writes_client.writer("x/y"):
            1 / 0  # noqa: B018
    assert writes.aborts == ["s1"] and len(writes.begins) == 1  # never opened: nothing to abort


def test_a_failed_source_is_not_committed(writes, writes_client):
    def broken():
        yield pa.record_batch({"a": [1]})
        raise OSError("disk")

    with writes_client.writer("x/y") as w:
        w.write("good.parquet", pa.table({"a": [1]}))
        with pytest.raises(OSError, match="disk"):
            w.write("bad.parquet", broken())
    assert list(writes.commits[0].parts) == ["p1"]  # whatever the server staged of the broken part is left out
    w2 = writes_client.writer("x/y")
    with pytest.raises(OSError, match="disk"):
        w2.write("bad.parquet", broken())
    with pytest.raises(sheaf.SheafError, match="every part upload of this session failed"):
        w2.commit()


def test_lineage_nodes(writes, writes_client):
    nodes = writes_client.lineage("x/y", depth=3)
    assert nodes[0] == sheaf.LineageNode(
        "x/y", TOP, 0, "m", "alice", "sheaf-python 0.1.0", (sheaf.LineageInput("a/b", "cd" * 32, "sheaf://a/b@cd"),)
    )
    assert nodes[1].depth == 3 and nodes[1].missing == "gone" and nodes[1].message is None


def test_derived_from_datasets_and_uris_are_pinned_by_planning(writes, writes_client):
    ds = writes_client.dataset(package="x/y", path="t")
    with writes_client.track_lineage() as tracked:
        writes_client.write("x/y/t.parquet", pa.table({"a": [1]}), derived_from=[ds, "x/y:v1/t"])
    assert tracked.inputs == ()  # resolving derived_from= is not a read
    inputs = list(writes.begins[0].inputs)
    pinned = f"sheaf://x/y@{TOP}/t"
    assert inputs == [sheaf_pb2.LineageInput(package="x/y", top_hash=TOP, uri=pinned)]  # the same input once
    assert writes.commands[-1] == b"sheaf://x/y:v1/t"  # a URI is planned as it is: the server resolves it


def test_write_result_is_a_str_that_pickles():
    import pickle

    r = sheaf.WriteResult("ab" * 32, package="x/y", uris=["sheaf://x/y@ab/t"], rows=3)
    again = pickle.loads(pickle.dumps(r))
    assert again == r and type(again) is sheaf.WriteResult and vars(again) == vars(r)
    assert again.uri == "sheaf://x/y@ab/t" and again.rows == 3 and again.ref == f"x/y@{r}"
