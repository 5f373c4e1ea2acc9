"""``python -m sandbox serve``: run the Microsoft 365 sandbox until interrupted."""

import argparse
import signal
import sys
import threading

from sandbox.scopes import PERMISSIONS
from sandbox.server import Sandbox


def build_parser() -> argparse.ArgumentParser:
    """The command line: `serve` and its options, with their defaults in --help."""
    parser = argparse.ArgumentParser(
        prog="python -m sandbox",
        description="Local stand-in for Entra ID, Microsoft Graph mail and "
        "Exchange Online SMTP and IMAP.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="run the sandbox until Ctrl-C",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (the control API answers loopback callers only)",
    )
    serve.add_argument(
        "--https-port", type=int, default=8365, help="identity and Graph (HTTPS)"
    )
    serve.add_argument(
        "--smtp-port", type=int, default=8587, help="Exchange Online SMTP (STARTTLS)"
    )
    serve.add_argument(
        "--imap-port",
        type=int,
        default=8993,
        help="Exchange Online IMAP (implicit TLS)",
    )
    serve.add_argument(
        "--state-dir", default="var/sandbox", help="CA, keys and certificates"
    )
    serve.add_argument(
        "--no-control",
        action="store_true",
        help="turn off the control API under /_sandbox/ (ca.pem stays)",
    )
    serve.add_argument(
        "--grant",
        action="append",
        default=[],
        metavar="PERMISSION",
        help="an application permission to add to the seeded app, kept across "
        "resets (repeatable), e.g. Mail.ReadBasic.All for the Sent Items lookup",
    )
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    known = set().union(*(application for application, _ in PERMISSIONS.values()))
    for name in args.grant:
        if name not in known:
            parser.error(
                f"--grant {name}: not an application permission the sandbox knows "
                f"({', '.join(sorted(known))})"
            )

    sandbox = Sandbox(
        host=args.host,
        https_port=args.https_port,
        smtp_port=args.smtp_port,
        imap_port=args.imap_port,
        state_dir=args.state_dir,
        control=not args.no_control,
        grant=args.grant,
    )
    sandbox.start()
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    print_banner(sandbox, control=not args.no_control)
    try:
        while not stopping.wait(1.0):
            pass
    finally:
        sandbox.stop()
        print("Sandbox stopped.", flush=True)
    return 0


def print_banner(sandbox: Sandbox, *, control: bool) -> None:
    seed = sandbox.seed
    seed.pop("breakages", None)  # long; GET /_sandbox/seed has it
    width = max(len(key) for key in seed)
    lines = ["Microsoft 365 sandbox running", ""]
    for key, value in seed.items():
        if isinstance(value, list):
            value = ", ".join(value)
        lines.append(f"  {key.ljust(width)}  {value}")
    lines += [
        "",
        f"  {'CA certificate'.ljust(width)}  {sandbox.ca_path.resolve()}",
        f"  {'identity/Graph'.ljust(width)}  {sandbox.base_url}",
        f"  {'SMTP (STARTTLS)'.ljust(width)}  {sandbox.smtp_host}:{sandbox.smtp_port}",
        f"  {'IMAP (TLS)'.ljust(width)}  {sandbox.imap_host}:{sandbox.imap_port}",
    ]
    if control:
        lines.append(f"  {'inbox'.ljust(width)}  {sandbox.inbox_url}")
        lines.append(
            f"  {'breakages'.ljust(width)}  {sandbox.base_url}/_sandbox/seed "
            "(under breakages)"
        )
    else:
        lines.append("  control API and inbox are off (--no-control)")
    lines += ["", "Press Ctrl-C to stop."]
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    sys.exit(main())
