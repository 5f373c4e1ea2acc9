"""A local stand-in for Entra ID, Microsoft Graph mail and Exchange Online SMTP.

See README.md in this folder for the interface. ``Sandbox`` runs it in a
background thread::

    with Sandbox() as sb:
        sb.authority, sb.graph_host, sb.smtp_port
"""

from sandbox.server import Sandbox

__all__ = ["Sandbox"]
