"""Command line: ``python -m meshcore demo`` and ``python -m meshcore inspect FILE``."""

from __future__ import annotations

import argparse
import sys

from meshcore import __version__
from meshcore.errors import MeshcoreError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="meshcore", description=__doc__)
    parser.add_argument("--version", action="version", version=f"meshcore {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="make mixed traffic, write a pcap, parse it, report; simulate the load balancers;"
        " run discovery, health checks and balancing together on loopback",
    )
    demo.add_argument("--packets", type=int, default=100_000, help="frames to make")
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--keep", metavar="PCAP", help="keep the generated capture at this path")
    demo.add_argument(
        "--sim-scale",
        type=float,
        default=1.0,
        help="size of the load-balancing simulations (1: the full runs, about a minute; 0: skip)",
    )
    demo.add_argument(
        "--plot",
        metavar="PNG",
        default="meshcore-balance.png",
        help="where to plot the simulations' latency percentiles ('' for no plot)",
    )
    demo.add_argument(
        "--no-mesh",
        action="store_true",
        help="skip the discovery + health checking + balancing run on loopback",
    )
    insp = sub.add_parser("inspect", help="parse a pcap / pcapng file and report on it")
    insp.add_argument("file")
    args = parser.parse_args(argv)

    from meshcore import demo as demo_mod  # imported late: argparse errors stay fast

    try:
        if args.command == "demo":
            print(
                demo_mod.run_demo(
                    args.packets,
                    args.seed,
                    args.keep,
                    sim_scale=args.sim_scale,
                    plot_path=args.plot or None,
                    mesh=not args.no_mesh,
                )
            )
        else:
            print(demo_mod.inspect(args.file))
    except (MeshcoreError, OSError) as e:
        print(f"meshcore: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
