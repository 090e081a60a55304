"""A live Flight server that computes for long before it sends anything, for
test_stall.py: `python silent_server.py SECONDS` serves GetFlightInfo (one
endpoint, the table `id` 0..9, `EndpointMetadata.rows` stated) and a DoGet that
waits SECONDS before the stream's schema and SECONDS again before its batch;
it prints `port N` once it listens and serves until stdin closes.

It is built on grpcio (the Python gRPC server, a dependency of grpcio-tools)
rather than pyarrow's FlightServerBase: both answer HTTP/2 pings while a call
computes, as Sheaf's server (tonic) does, but a gRPC core server refuses
pings more frequent than every 5 minutes on a call it sends nothing on
(GOAWAY too_many_pings, grpc.http2.min_ping_interval_without_data_ms and
max_ping_strikes), options pyarrow does not expose. Here ping strikes are
off (`grpc.http2.max_ping_strikes` 0), like tonic, which has no such policy.
"""

from __future__ import annotations

import sys
import time
from concurrent import futures

import grpc
import pyarrow as pa
import pyarrow.flight as flight

from sheaf._proto import sheaf_pb2

SERVICE = "arrow.flight.protocol.FlightService"
TABLE = pa.table({"id": pa.array(range(10), pa.int64())})
TOP = "ab" * 32


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        if not n:
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


def flight_data(ipc: pa.Buffer) -> bytes:
    """A serialized IPC message (schema or record batch) as an encoded
    `arrow.flight.protocol.FlightData`: data_header (2), data_body (1000)."""
    message = pa.ipc.read_message(ipc)
    header = message.metadata.to_pybytes()
    body = message.body.to_pybytes() if message.body is not None else b""
    out = b"\x12" + _varint(len(header)) + header
    if body:
        out += _varint(1000 << 3 | 2) + _varint(len(body)) + body
    return out


def main() -> None:
    seconds = float(sys.argv[1])

    def get_flight_info(request: bytes, context: grpc.ServicerContext) -> bytes:
        descriptor = flight.FlightDescriptor.deserialize(request)
        meta = sheaf_pb2.EndpointMetadata(partition=0, first_row=0, table_rows=TABLE.num_rows, rows=TABLE.num_rows)
        endpoint = flight.FlightEndpoint(b"t", [], app_metadata=meta.SerializeToString())
        info_meta = sheaf_pb2.FlightInfoMetadata(
            package="x/y", top_hash=TOP, path="t", pinned_uri=f"sheaf://x/y@{TOP}/t"
        )
        info = flight.FlightInfo(
            TABLE.schema, descriptor, [endpoint], TABLE.num_rows, -1, app_metadata=info_meta.SerializeToString()
        )
        return bytes(info.serialize())

    def do_get(request: bytes, context: grpc.ServicerContext):
        time.sleep(seconds)  # "planning": nothing sent, not even the headers
        yield flight_data(TABLE.schema.serialize())
        time.sleep(seconds)  # "scanning": the stream is open, no batch yet
        for batch in TABLE.to_batches():
            yield flight_data(batch.serialize())

    server = grpc.server(
        futures.ThreadPoolExecutor(4),
        options=[("grpc.http2.max_ping_strikes", 0), ("grpc.http2.min_ping_interval_without_data_ms", 0)],
    )
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                SERVICE,
                {
                    "GetFlightInfo": grpc.unary_unary_rpc_method_handler(get_flight_info),
                    "DoGet": grpc.unary_stream_rpc_method_handler(do_get),
                },
            )
        ]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"port {port}", flush=True)
    sys.stdin.read()  # until the test closes it (or dies)
    server.stop(None)


if __name__ == "__main__":
    main()
