"""Code generated from ``proto/sheaf.proto`` when the package is built
(``build_proto.py``): ``sheaf_pb2`` holds the wire messages of Sheaf's Flight
service. Not committed; ``python clients/python/build_proto.py`` writes it
into the source tree for editors and type checkers."""
