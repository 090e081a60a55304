#!/usr/bin/env python3
"""The baselines Sheaf is measured against, each run as its own server process:

  memory FILE...          pyarrow's C++ FlightServerBase serving tables loaded into
                          memory at start (pq.read_table); DoGet sends the table as
                          it is (flight.RecordBatchStream), no Python per batch.
  parquet FILE...         FlightServerBase that reads the Parquet file on every DoGet
                          (pq.read_table, multithreaded decode) and then sends it:
                          the fair peer for a cold read.
  parquet-stream FILE...  FlightServerBase that streams the Parquet file batch by
                          batch on every DoGet (ParquetFile.iter_batches through a
                          GeneratorStream): first batch early, Python per batch.
  pickle FILE             TCP server: a pandas DataFrame (strings as Python objects,
                          as pandas held them before Arrow) pickled per request,
                          length-prefixed. What PySpark's workers did before Arrow.
  json FILE               HTTP server: the DataFrame as JSON records
                          (DataFrame.to_json(orient="records")) per request.

Flight peers: a PATH descriptor names the file; GetFlightInfo returns one endpoint
whose ticket is the path. Prints `peer: serving on URL` once listening.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import http.server  # noqa: E402
import pickle  # noqa: E402
import socketserver  # noqa: E402
import struct  # noqa: E402

import harness  # noqa: E402,F401  (client environment before pyarrow)
import pyarrow.flight as flight  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402


class Peer(flight.FlightServerBase):
    def __init__(self, mode: str, files: list[str]):
        super().__init__("grpc://127.0.0.1:0")
        self.mode = mode
        self.files = {str(Path(f).resolve()): Path(f).resolve() for f in files}
        self.tables = {k: pq.read_table(p) for k, p in self.files.items()} if mode == "memory" else {}

    def _path(self, key: bytes | str) -> str:
        key = key.decode() if isinstance(key, bytes) else key
        key = str(Path(key).resolve())
        if key not in self.files:
            raise flight.FlightServerError(f"unknown table {key}")
        return key

    def get_flight_info(self, context, descriptor):
        key = self._path(b"/".join(descriptor.path) if descriptor.path else descriptor.command)
        if key in self.tables:
            t = self.tables[key]
            schema, rows, size = t.schema, t.num_rows, t.nbytes
        else:
            md = pq.ParquetFile(self.files[key]).metadata
            schema, rows, size = md.schema.to_arrow_schema(), md.num_rows, -1
        return flight.FlightInfo(schema, descriptor, [flight.FlightEndpoint(key.encode(), [])], rows, size)

    def do_get(self, context, ticket):
        key = self._path(ticket.ticket)
        if self.mode == "memory":
            return flight.RecordBatchStream(self.tables[key])
        if self.mode == "parquet":
            return flight.RecordBatchStream(pq.read_table(self.files[key]))
        pf = pq.ParquetFile(self.files[key])
        return flight.GeneratorStream(pf.schema_arrow, pf.iter_batches())


def dataframe(path: str):
    """The table as pandas held it before Arrow: numbers in numpy arrays,
    strings as Python objects."""
    df = pq.read_table(path).to_pandas()
    for c in df.columns:
        if df[c].dtype.kind not in "biufcmM":
            df[c] = df[c].astype(object)
    return df


def serve_pickle(path: str) -> None:
    df = dataframe(path)

    class Handler(socketserver.BaseRequestHandler):
        def handle(self):
            self.request.recv(1)  # any byte: "send it"
            data = pickle.dumps(df, protocol=pickle.HIGHEST_PROTOCOL)
            self.request.sendall(struct.pack("<Q", len(data)))
            self.request.sendall(data)

    socketserver.ThreadingTCPServer.allow_reuse_address = True
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler) as srv:
        srv.daemon_threads = True
        print(f"peer: serving on tcp://127.0.0.1:{srv.server_address[1]}", flush=True)
        srv.serve_forever()


def serve_json(path: str) -> None:
    df = dataframe(path)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            body = df.to_json(orient="records").encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler) as srv:
        srv.daemon_threads = True
        print(f"peer: serving on http://127.0.0.1:{srv.server_address[1]}/", flush=True)
        srv.serve_forever()


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    mode, files = sys.argv[1], sys.argv[2:]
    if mode == "pickle":
        serve_pickle(files[0])
    elif mode == "json":
        serve_json(files[0])
    elif mode in ("memory", "parquet", "parquet-stream"):
        server = Peer(mode, files)
        print(f"peer: serving on grpc://127.0.0.1:{server.port}", flush=True)
        server.serve()
    else:
        sys.exit(f"unknown mode {mode!r}\n{__doc__}")


if __name__ == "__main__":
    main()
