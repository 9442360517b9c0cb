"""A gRPC client no one here wrote: grpcio's own ``xds:`` resolver and balancer, in a process of
its own so its bootstrap (``GRPC_XDS_BOOTSTRAP_CONFIG`` in the environment) is read afresh.

Run as ``python grpc_xds_client.py xds:///echo``. Each line read from stdin is a number N: the
client makes N calls of ``/meshcore.test.Echo/Name`` (which answers with the backend's name) and
prints one JSON line, the list of answers (``"error: CODE"`` for a failed call). EOF ends it.
"""

from __future__ import annotations

import json
import sys

import grpc

METHOD = "/meshcore.test.Echo/Name"


def main(target: str) -> None:
    with grpc.insecure_channel(target) as channel:
        call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(METHOD)
        for line in sys.stdin:
            answers: list[str] = []
            for _ in range(int(line)):
                try:
                    answers.append(call(b"", timeout=10.0, wait_for_ready=True).decode())
                except grpc.RpcError as exc:
                    answers.append(f"error: {exc.code().name}")
            print(json.dumps(answers), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
