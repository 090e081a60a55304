"""In-process fakes of the server for the contract tests (test_contract.py,
test_write_contract.py, the mid-stream failover rules in test_failover.py):
pyarrow Flight servers on loopback that play the server's part exactly as
proto/sheaf.proto says, recording what they were sent. Their fixtures (fake,
fake_client, other, third, writes, writes_client) are in conftest.py."""

from __future__ import annotations

import gc
import threading
import urllib.parse
from collections.abc import Callable

import pyarrow as pa
import pyarrow.flight as flight
from google.protobuf import any_pb2, json_format
from google.rpc import error_details_pb2, status_pb2

from sheaf._proto import sheaf_pb2

TOP = "ab" * 32


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
        # EndpointMetadata.rows of each endpoint (None: absent); by default the
        # server's rule (`Plan::exact_rows`, see `exact_rows`).
        self.stated_rows: list[int | None] | None = None
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
        stated = self.stated_rows or [
            exact_rows(command, typed, request, rows, len(self.endpoints)) for _, rows, _ in self.endpoints
        ]
        for i, (first, rows, locations) in enumerate(self.endpoints):
            meta = sheaf_pb2.EndpointMetadata(partition=i, first_row=first, table_rows=rows, rows=stated[i])
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


def exact_rows(command: bytes, typed: bool, request: sheaf_pb2.DatasetRequest, rows: int, endpoints: int):
    """EndpointMetadata.rows of an endpoint of `rows` rows (what the fake's
    DoGet returns for it: it applies no filter, sample or limit), by the
    server's rule (`Plan::exact_rows`): none under a filter or a sample
    fraction, nor under a limit or `sample_rows` cut into several endpoints."""
    if typed:
        given = {
            "filter": bool(request.filter),
            **{k: request.HasField(k) for k in ("sample", "limit", "sample_rows")},
        }
    else:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(command.decode()).query)
        given = {k: k in query for k in ("filter", "sample", "limit", "sample_rows")}
    if given["filter"] or given["sample"]:
        return None
    if endpoints > 1 and (given["limit"] or given["sample_rows"]):
        return None
    return rows


def encode(msg, typed: bool) -> bytes:
    if typed:
        return msg.SerializeToString()
    return json_format.MessageToJson(msg, preserving_proto_field_name=True).encode()


def stop(server: FakeSheaf) -> None:
    server.get_error = server.stream_error = None
    server.shutdown()
    del server
    gc.collect()  # the last reference to a server may sit in a cycle; gRPC stops once it is gone


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


def unavailable():
    return flight.FlightUnavailableError("Stream removed (Socket closed)")


def ids_of(batches) -> list[int]:
    return [i for b in batches for i in b.column("id").to_pylist()]
