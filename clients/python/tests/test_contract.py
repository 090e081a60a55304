"""The client's side of the wire contract (proto/sheaf.proto), against
pyarrow Flight servers on loopback that play the server's part exactly as the
proto says (fakes.py), so each rule is checked on its own:

- keyword arguments become a typed `sheaf.v1.DatasetRequest` packed in a
  `google.protobuf.Any`; a URI is sent as it is;
- endpoint metadata (`EndpointMetadata`) and FlightInfo metadata
  (`FlightInfoMetadata`) are read binary for typed requests, as JSON for text;
- errors are classified by the `google.rpc.ErrorInfo` in their status
  details, and by their gRPC code when there is none (also when the details
  come in gRPC trailers from a server that is not an Arrow one);
- the endpoint policy: locations in order, the next one on UNAVAILABLE or
  when it cannot be connected to, "this server" for none and for
  `arrow-flight-reuse-connection://?`, one connection per location;
- actions in their typed form.

The policy in the middle of a stream (a replica failing mid-read) is in
test_failover.py, the write side of the contract in test_write_contract.py.
The real server is tested in test_client.py and test_reads.py.
"""

from __future__ import annotations

import pickle

import pyarrow.flight as flight
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

import sheaf
from sheaf._proto import sheaf_pb2

from conftest import free_port
from fakes import TOP, encode, status_details, unpack

REUSE = "arrow-flight-reuse-connection://?"


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
        assert [e.rows for e in ds.endpoints] == [5, 7, 1]  # EndpointMetadata.rows, as the server states them
    # Without `rows` for every endpoint, rows are counted, not taken from table_rows.
    fake.stated_rows = [5, None, 1]
    ds = fake_client.dataset(package="x/y", path="t")
    assert ds._planned_rows() is None and [e.rows for e in ds.endpoints] == [5, None, 1]
    assert ds.endpoint_rows() == [5, 7, 1]


def test_metadata_in_the_wrong_form_is_an_error(fake, fake_client, monkeypatch):
    right = encode
    monkeypatch.setattr("fakes.encode", lambda msg, typed: right(msg, not typed))
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
