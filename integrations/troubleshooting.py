"""
Error codes mapped once to the words shown to a person, with the steps that fix them.

Keys are the stable `code`s raised by `integrations.exceptions`. References:
- AADSTS codes: https://learn.microsoft.com/entra/identity-platform/reference-error-codes
- Graph mail errors: https://learn.microsoft.com/graph/errors
- Exchange Online SMTP replies:
  https://learn.microsoft.com/exchange/mail-flow-best-practices/non-delivery-reports-in-exchange-online/non-delivery-reports-in-exchange-online
"""

from dataclasses import dataclass

from django.utils.translation import gettext_lazy as _


@dataclass(frozen=True)
class Troubleshooting:
    title: str
    text: str
    steps: tuple = ()


_CONSENT_STEPS = (
    _(
        "In the Azure portal, open Microsoft Entra ID › App registrations › your app › API permissions."
    ),
    _(
        "Add Microsoft Graph › Application permissions › Mail.Send (for SMTP: Office 365 Exchange Online › SMTP.SendAsApp)."
    ),
    _(
        "Click “Grant admin consent for your organisation” and confirm; the status must read “Granted”."
    ),
)

TROUBLESHOOTING = {
    # --- configuration -------------------------------------------------------------
    "configuration": Troubleshooting(
        _("The settings are incomplete"),
        _(
            "Some required values are missing or invalid. Correct the highlighted fields and try again."
        ),
    ),
    "secret_missing": Troubleshooting(
        _("No client secret or certificate"),
        _(
            "Enter the client secret's value (or upload a certificate) before testing or saving."
        ),
    ),
    # --- network -----------------------------------------------------------------
    "connection_failed": Troubleshooting(
        _("Connection failed"),
        _(
            "The service could not be reached. Verify the Tenant ID, Client ID and Client Secret, that the app registration is active, and that this server can reach Microsoft 365 (proxy and firewall rules)."
        ),
    ),
    "dns_failure": Troubleshooting(
        _("Host name not found"),
        _(
            "The server name could not be resolved. Check the host name and the Cloud setting, and this server's DNS configuration."
        ),
    ),
    "connection_refused": Troubleshooting(
        _("Connection refused"),
        _(
            "The server refused the connection. Check the host and port, and that a firewall does not block outbound traffic to it."
        ),
    ),
    "timeout": Troubleshooting(
        _("The service did not answer in time"),
        _(
            "The request timed out. Check network connectivity and firewall rules from this server to Microsoft 365, then try again."
        ),
    ),
    "tls_error": Troubleshooting(
        _("Secure connection failed"),
        _(
            "The TLS handshake or the server certificate check failed. Check that the host name is right, that the server's certificate is trusted (set M365_CA_BUNDLE for a private CA), and that no proxy intercepts TLS."
        ),
    ),
    # --- outbound policy (providers/outbound.py) ----------------------------------------
    "smtp_no_answer": Troubleshooting(
        _("No SMTP server answered"),
        _(
            "The server at %(address)s did not answer as an SMTP server: it could not be reached, or what answered is not an SMTP server. Check the SMTP host and port (587 for STARTTLS, 465 for SSL/TLS) and that this server may connect to it."
        ),
    ),
    "address_never_allowed": Troubleshooting(
        _("This address is never allowed"),
        _(
            "Connecting to %(address)s was refused: it resolves to a link-local or cloud metadata address (or an unspecified, multicast or reserved one), which is never allowed. Enter the host name of the mail server or identity provider."
        ),
    ),
    "address_private": Troubleshooting(
        _("Private addresses are not allowed"),
        _(
            "Connecting to %(address)s was refused: it resolves to a private address (loopback, a private network or shared address space). To use an internal server, set OUTBOUND_ALLOW_PRIVATE_NETWORKS or add it to OUTBOUND_ALLOWED_HOSTS on this server."
        ),
    ),
    "address_refused": Troubleshooting(
        _("This address is not allowed"),
        _(
            "Connecting to %(address)s was refused by this server's outbound policy. Enter the host name of the mail server or identity provider."
        ),
    ),
    "smtp_port_not_allowed": Troubleshooting(
        _("This SMTP port is not allowed"),
        _(
            "Connecting to %(address)s was refused: the port is not one this server uses for SMTP. Use 587 (STARTTLS), 465 (SSL/TLS), 25 or 2525, or add the port to SMTP_ALLOWED_PORTS_EXTRA on this server."
        ),
    ),
    # --- identity platform (AADSTS) ---------------------------------------------------
    "tenant_not_found": Troubleshooting(
        _("Tenant ID not found"),
        _(
            "No Microsoft Entra tenant has this ID or domain (AADSTS90002). Copy the Directory (tenant) ID from the app registration's Overview page, and check that the Cloud matches where the tenant lives."
        ),
    ),
    "client_not_found": Troubleshooting(
        _("Application not found in the tenant"),
        _(
            "No app with this Client ID exists in the tenant (AADSTS700016). Copy the Application (client) ID from the app registration's Overview page, and check that the Tenant ID is the tenant where the app is registered."
        ),
    ),
    "secret_invalid": Troubleshooting(
        _("Invalid client secret"),
        _(
            "The client secret was refused (AADSTS7000215). You may have pasted the secret's ID instead of its value: in Certificates & secrets, the Value column is shown only once, when the secret is created. Create a new secret and paste its Value."
        ),
    ),
    # secret_invalid, when the Client Secret typed has the shape of a GUID: the
    # Secret ID column of Certificates & secrets, not the Value (the service checks
    # the form's value; integrations/services/tools.py).
    "secret_id_pasted": Troubleshooting(
        _("This looks like the Secret ID, not the secret's Value"),
        _(
            "The client secret was refused (AADSTS7000215), and what was entered in Client Secret has the shape of a GUID, as a Secret ID does. The Value is a different, longer text."
        ),
        (
            _(
                "In the Azure portal, open Microsoft Entra ID › App registrations › your app › Certificates & secrets › Client secrets."
            ),
            _(
                "Copy the secret's Value column (not the Secret ID column) into Client Secret. The Value is shown only right after the secret is created; if it is hidden now, click “New client secret” and copy the new Value at once."
            ),
        ),
    ),
    "secret_expired": Troubleshooting(
        _("Client secret expired"),
        _(
            "The client secret has expired (AADSTS7000222). Client secrets have an expiry date: create a new secret in the app registration's Certificates & secrets, paste its Value here and save."
        ),
    ),
    "credential_missing": Troubleshooting(
        _("No credential was sent"),
        _(
            "The identity platform received neither a client secret nor a certificate (AADSTS7000218). Enter the client secret's value, or upload a certificate."
        ),
    ),
    "certificate_invalid": Troubleshooting(
        _("Certificate credential refused"),
        _(
            "The signed client assertion was refused. Upload this certificate (public part) to the app registration's Certificates & secrets, and check that it has not expired."
        ),
    ),
    "consent_required": Troubleshooting(
        _("Permission not granted (admin consent missing)"),
        _(
            "The app has not been granted the permission it asks for, or an administrator has not consented to it (AADSTS65001)."
        ),
        _CONSENT_STEPS,
    ),
    "invalid_scope": Troubleshooting(
        _("Invalid scope"),
        _(
            "The requested scope is not valid for this app (AADSTS70011). For app-only access use https://graph.microsoft.com/.default; for delegated SMTP use https://outlook.office.com/SMTP.Send."
        ),
    ),
    "redirect_mismatch": Troubleshooting(
        _("Redirect URL not registered"),
        _(
            "The Redirect URL shown in the settings is not registered for the app (AADSTS50011). Add it under the app registration's Authentication › Web › Redirect URIs."
        ),
    ),
    "reauthorization_required": Troubleshooting(
        _("Authorization expired or revoked"),
        _(
            "The mailbox's authorization is no longer valid (the refresh token expired from inactivity, AADSTS700082, or was revoked, for instance because the user changed or reset their password, AADSTS50173). Click Re-authorize and sign in as the configured user."
        ),
    ),
    # A delegated grant refreshed by the keep-alive job or a send (issue 14).
    "mfa_required": Troubleshooting(
        _("Multi-factor sign-in now required"),
        _(
            "The signed-in user must now use multi-factor authentication (AADSTS50076), so the authorization given without it no longer works. Click Re-authorize and sign in as the configured user, completing the second factor."
        ),
    ),
    "account_disabled": Troubleshooting(
        _("The signed-in account is disabled"),
        _(
            "The account that authorized this tool is disabled in Microsoft Entra ID (AADSTS50057). Ask an administrator to enable it again (Entra ID › Users › the user › Account enabled), or use another mailbox, then click Re-authorize and sign in."
        ),
    ),
    "consent_revoked": Troubleshooting(
        _("Consent for the app was revoked"),
        _(
            "An administrator removed the consent this tool's sign-in was given with (AADSTS65001). In Entra ID › App registrations › your app › API permissions, grant admin consent for the delegated permissions again (SMTP.Send, or Mail.Send for the API), then click Re-authorize and sign in."
        ),
    ),
    "authentication_failed": Troubleshooting(
        _("401 Unauthorized"),
        _(
            "Authentication failed. Ensure the Client ID and Client Secret match the registered application and that admin consent has been granted for the Mail.Send permission."
        ),
    ),
    # --- Microsoft Graph ------------------------------------------------------------
    "unauthorized": Troubleshooting(
        _("401 Unauthorized"),
        _(
            "Microsoft Graph refused the access token. Ensure the Client ID and Client Secret match the registered application and that admin consent has been granted for the Mail.Send permission."
        ),
    ),
    "permission_missing": Troubleshooting(
        _("Application permission not granted"),
        _(
            "The app does not have the application permission it needs (Mail.Send for Microsoft Graph, SMTP.SendAsApp for SMTP), or admin consent has not been given."
        ),
        _CONSENT_STEPS,
    ),
    "mailbox_access_denied": Troubleshooting(
        _("Sender address not authorized for this app"),
        _(
            "An Exchange Online application access policy keeps this app from sending as the From mailbox (“Access to OData is disabled”). Add the mailbox to the group the policy allows (New-ApplicationAccessPolicy / Test-ApplicationAccessPolicy), or use a mailbox the policy covers."
        ),
    ),
    "send_as_denied": Troubleshooting(
        _("Sender address not authorized"),
        _(
            "The account is not allowed to send as the From address. Use the signed-in mailbox as From, or grant Send As on the From mailbox (Add-RecipientPermission … -AccessRights SendAs); for app-only SMTP grant the app's service principal FullAccess on the mailbox (Add-MailboxPermission)."
        ),
    ),
    "sender_not_found": Troubleshooting(
        _("Sender address not found"),
        _(
            "The From address is not a user or shared mailbox in this Microsoft 365 tenant (ErrorInvalidUser). Use a mailbox of the tenant; shared mailboxes work too."
        ),
    ),
    "sender_no_mailbox": Troubleshooting(
        _("The sender has no Exchange Online mailbox"),
        _(
            "The From account exists but has no mailbox (MailboxNotEnabledForRESTAPI): it may lack an Exchange Online licence, or be an on-premises mailbox. Assign a licence or use a shared mailbox."
        ),
    ),
    "recipient_rejected": Troubleshooting(
        _("Recipient refused"),
        _("The recipient addresses were refused. Check the To addresses."),
    ),
    "throttled": Troubleshooting(
        _("Too many requests"),
        _(
            "Microsoft 365 is throttling this app or mailbox (HTTP 429, or an SMTP 4.3.2 / 421 reply: Exchange Online accepts 30 messages a minute and 10,000 recipients a day per mailbox; Microsoft Graph 10,000 requests per 10 minutes per app and mailbox). Sending slows down and is retried automatically after the delay the service asked for, without using up the email's attempts; if it persists, another program may be sending from the same mailbox, or lower the tool's Messages per minute, or use digests."
        ),
    ),
    "mailbox_concurrency": Troubleshooting(
        _("Too many messages at once for this mailbox"),
        _(
            "Microsoft Graph accepts 4 requests at a time per app and mailbox, and refused one more (MailboxConcurrency). Sending is retried automatically after the delay Microsoft asked for, without using up the email's attempts. If it persists, another program is probably using the same app registration and mailbox at the same time: give it its own app registration or mailbox."
        ),
    ),
    "service_unavailable": Troubleshooting(
        _("Microsoft 365 is temporarily unavailable"),
        _(
            "The service answered with a temporary error. Sending will be retried automatically; check the Microsoft 365 service health page if it persists."
        ),
    ),
    # --- Exchange Online SMTP ---------------------------------------------------------
    "smtp_auth_failed": Troubleshooting(
        _("SMTP authentication unsuccessful (535 5.7.3)"),
        _(
            "The mail server refused the credentials. For OAuth, check that the token's app has SMTP.SendAsApp (application) or SMTP.Send (delegated) with admin consent and that its service principal is registered in Exchange Online with a mailbox permission; for Basic, check user name and password."
        ),
    ),
    "smtp_auth_disabled": Troubleshooting(
        _("SMTP AUTH is disabled (535 5.7.139)"),
        _(
            "Authenticated SMTP submission is turned off for the tenant or for this mailbox. Enable it for the mailbox (Set-CASMailbox -SmtpClientAuthenticationDisabled $false) or in the tenant's mail flow settings."
        ),
    ),
    "basic_auth_unsupported": Troubleshooting(
        _("Basic authentication is not supported (550 5.7.30)"),
        _(
            "The server no longer accepts a user name and password. Switch Authentication type to OAuth 2.0."
        ),
    ),
    "relay_denied": Troubleshooting(
        _("Sending refused without authentication"),
        _(
            "The server requires authentication before it accepts mail (530 5.7.57). Choose an Authentication type."
        ),
    ),
    "sender_rejected": Troubleshooting(
        _("Sender address refused"),
        _(
            "The mail server refused the From address. Check that it is a mailbox the authenticated account may send as."
        ),
    ),
    "starttls_unavailable": Troubleshooting(
        _("The server does not offer STARTTLS"),
        _(
            "The server did not offer STARTTLS on this port. Check the port (587 for STARTTLS, 465 for SSL/TLS) and the Security setting."
        ),
    ),
    "smtp_auth_unavailable": Troubleshooting(
        _("The server does not offer authentication"),
        _(
            "The server did not offer AUTH after the secure connection was set up. Check the host and port, or choose Authentication type None if the server relays without it."
        ),
    ),
    "smtp_not_supported": Troubleshooting(
        _("The server does not support this"),
        _(
            "The mail server does not support the requested authentication mechanism or extension. Check the Authentication type."
        ),
    ),
    "smtp_insecure_not_allowed": Troubleshooting(
        _("Plain-text SMTP is not allowed"),
        _(
            "Security “None” sends passwords and mail unencrypted, so it is switched off on this server (SMTP_ALLOW_INSECURE). Choose STARTTLS or SSL/TLS."
        ),
    ),
    "oauth_endpoint_insecure": Troubleshooting(
        _("The OAuth endpoints must use https://"),
        _(
            "The Client Secret and the tokens are sent to the Token endpoint, so plain http:// endpoints are switched off on this server (OAUTH_ALLOW_INSECURE_ENDPOINTS). Enter the https:// URLs of the Authorization and Token endpoints."
        ),
    ),
    "admin_email_missing": Troubleshooting(
        _("Your account has no email address"),
        _(
            "Validate and Save sends a validation email to your own address. Set an email address on your account first, then try again."
        ),
    ),
    # --- the Email box: reading the sender mailbox (IMAP, Graph) ---------------------------
    "mailbox_login_failed": Troubleshooting(
        _("The Email box could not sign in"),
        _(
            "The mail server refused the Email box's Email and Password (NO LOGIN failed.): they are wrong, or basic authentication or IMAP is switched off for this mailbox. Exchange Online no longer accepts basic authentication: choose OAuth 2.0 there."
        ),
    ),
    "imap_permission_missing": Troubleshooting(
        _("The app may not read mail over IMAP"),
        _(
            "The access token does not carry the IMAP permission: IMAP.AccessAsApp (application) or IMAP.AccessAsUser.All (delegated) is not granted, or admin consent has not been given."
        ),
        (
            _(
                "In the Azure portal, open Microsoft Entra ID › App registrations › your app › API permissions."
            ),
            _(
                "OAuth 2.0 (application): add Office 365 Exchange Online › Application permissions › IMAP.AccessAsApp. OAuth 2.0 (delegated): add the delegated permission IMAP.AccessAsUser.All."
            ),
            _(
                "Click “Grant admin consent for your organisation”; for delegated, click Save & Authorize again."
            ),
        ),
    ),
    "mailbox_permission_missing": Troubleshooting(
        _("The app has no access to this mailbox"),
        _(
            "Exchange Online refused the app's token for this mailbox (NO AUTHENTICATE failed.): the app's service principal is not registered in Exchange Online, or it has no FullAccess permission on the mailbox the Email box reads."
        ),
        (
            _(
                "In Exchange Online PowerShell, register the app once: New-ServicePrincipal -AppId <Application (client) ID> -ObjectId <object ID of the app's enterprise application>."
            ),
            _(
                "Give it the mailbox: Add-MailboxPermission -Identity <mailbox> -User <service principal ID> -AccessRights FullAccess."
            ),
            _("Wait a few minutes for Exchange Online to apply it, then test again."),
        ),
    ),
    "imap_disabled": Troubleshooting(
        _("IMAP is switched off for this mailbox"),
        _(
            "The sign-in was accepted but the mailbox cannot be opened over IMAP (User is authenticated but not connected): IMAP is disabled for the mailbox, or the account has no permission on it. Enable it (Set-CASMailbox <mailbox> -ImapEnabled $true) or check the mailbox permission."
        ),
    ),
    "mail_read_missing": Troubleshooting(
        _("The app may not read this mailbox"),
        _(
            "Microsoft Graph refused to read the mailbox (ErrorAccessDenied): the Mail.Read permission is not granted or not consented (application permission for Microsoft Azure Mail, delegated for SMTP with the API type), or an application access policy excludes the mailbox."
        ),
        (
            _(
                "In the Azure portal, open Microsoft Entra ID › App registrations › your app › API permissions."
            ),
            _(
                "Add Microsoft Graph › Mail.Read (Application permissions; delegated for a signed-in user), then click “Grant admin consent for your organisation” (delegated: Save & Authorize again)."
            ),
            _(
                "If an application access policy or RBAC for Applications limits the app, include this mailbox in it."
            ),
        ),
    ),
    "mailbox_unreadable": Troubleshooting(
        _("The inbox could not be opened"),
        _(
            "The mail server signed in but would not open the inbox, or answered in a way this product does not recognise. Check that the Email box's account has a mailbox on this server; the server log has the details."
        ),
    ),
    "imap_no_answer": Troubleshooting(
        _("No IMAP server answered"),
        _(
            "The server at %(address)s did not answer as an IMAP server: it could not be reached, or what answered is not an IMAP server. Check the Email box's Host name and Port (993 for SSL/TLS, 143 for STARTTLS) and that this server may connect to it."
        ),
    ),
    "imap_port_not_allowed": Troubleshooting(
        _("This IMAP port is not allowed"),
        _(
            "Connecting to %(address)s was refused: the port is not one this server uses for IMAP. Use 993 (SSL/TLS) or 143 (STARTTLS), or add the port to IMAP_ALLOWED_PORTS_EXTRA on this server."
        ),
    ),
    "imap_starttls_unavailable": Troubleshooting(
        _("The IMAP server does not offer STARTTLS"),
        _(
            "The server did not offer STARTTLS on this port. Check the Email box's Port and Security (993 with SSL/TLS, 143 with STARTTLS)."
        ),
    ),
    # --- delegated sign-in (Save & Authorize) -------------------------------------------
    "authorization_settings_changed": Troubleshooting(
        _("These changes need a new sign-in"),
        _(
            "The mailbox's authorization was given for the saved values of the settings marked below (such as the Tenant ID, Client ID, Client Secret, Scope or Username). To change them, click Save & Authorize and sign in again: the tool keeps sending with its current authorization until that sign-in completes. To keep the authorization, put the saved values back and click Save."
        ),
    ),
    "authorization_missing": Troubleshooting(
        _("Not authorized yet"),
        _(
            "No user has signed in for these settings. Click Save & Authorize and sign in as the configured Username."
        ),
    ),
    "authorization_denied": Troubleshooting(
        _("Sign-in was cancelled or denied"),
        _(
            "The sign-in did not grant access (access_denied). Click Save & Authorize again and accept the requested permissions."
        ),
    ),
    "authorization_failed": Troubleshooting(
        _("Authorization failed"),
        _(
            "The identity provider answered with an error. Check the Client ID, Client Secret and Redirect URL, then click Save & Authorize again."
        ),
    ),
    "authorization_not_pending": Troubleshooting(
        _("No authorization is waiting for this sign-in"),
        _(
            "This sign-in response does not belong to an authorization started here (wrong or unknown state). Start again with Save & Authorize."
        ),
    ),
    "authorization_reused": Troubleshooting(
        _("This sign-in response was already used"),
        _("Each sign-in can be used once. Start again with Save & Authorize."),
    ),
    "authorization_other_session": Troubleshooting(
        _("The sign-in was started in another session"),
        _(
            "Finish the sign-in in the same browser session that clicked Save & Authorize, or start again."
        ),
    ),
    "authorization_expired": Troubleshooting(
        _("The sign-in took too long"),
        _("The authorization request expired. Start again with Save & Authorize."),
    ),
    "authorization_code_refused": Troubleshooting(
        _("The sign-in’s authorization code was refused"),
        _(
            "The identity provider did not accept the code this sign-in returned: it was already used, it expired (a code lasts a few minutes), or it belongs to another sign-in than the one being completed, e.g. when Save & Authorize was clicked again meanwhile. Start again with Save & Authorize and finish that sign-in."
        ),
    ),
    "authorization_state_invalid": Troubleshooting(
        _("The sign-in response does not match"),
        _(
            "The response's state or nonce does not match the sign-in that was started. Start again with Save & Authorize."
        ),
    ),
    "account_mismatch": Troubleshooting(
        _("Signed in as another mailbox"),
        _(
            "The account that signed in is not the configured Username. Sign in as the Username (the From address), or change the settings and authorize again. Nothing was saved."
        ),
    ),
    # --- audit log entries that are not a tool's error (the audit log's Result) ---
    "recipient_refused": Troubleshooting(
        _("Recipient not allowed"),
        _(
            "An address is outside the domains this tool may send to (its Allowed recipient domains), so nothing was sent to it. The entry's detail names the address."
        ),
    ),
    "too_many_failed_sign_ins": Troubleshooting(
        _("Too many failed sign-ins"),
        _(
            "Sign-in is locked for this user name or address for a while. A security admin can unlock it on Sign-in lockouts."
        ),
    ),
    "unexpected": Troubleshooting(
        _("Unexpected answer"),
        _(
            "The service gave an answer this product does not recognise. The server log has the details; try again, and contact support if it persists."
        ),
    ),
}


#: Codes whose words name the address (host:port) the failure is about.
_NAMES_ADDRESS = frozenset(
    {"smtp_no_answer", "address_never_allowed", "address_private", "address_refused"}
    | {"smtp_port_not_allowed", "imap_no_answer", "imap_port_not_allowed"}
)


def troubleshooting_for(code: str, *, address: str = "") -> Troubleshooting:
    """The words for `code`, falling back to a generic explanation. `address` (our
    host:port, never a peer's text) fills the words that name it."""
    words = TROUBLESHOOTING.get(code) or TROUBLESHOOTING["unexpected"]
    if code not in _NAMES_ADDRESS:
        return words
    params = {"address": address or str(_("the configured address"))}
    return Troubleshooting(
        str(words.title) % params, str(words.text) % params, words.steps
    )
