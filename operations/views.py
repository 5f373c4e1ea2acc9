"""Probes (/healthz, /readyz) and the Operations page.

The probes answer JSON without a session, a CSRF token or a sign-in: /healthz to
anyone (the process answers, nothing else is touched, not even the database),
/readyz to READYZ_ALLOWED_NETWORKS or READYZ_TOKEN's bearer (operations/health.py).
"""

from django.http import JsonResponse
from django.shortcuts import render
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_safe

from integrations.permissions import security_admin_required
from integrations.selectors import credential_expiries
from operations import health


@never_cache
@require_safe
def healthz(request):
    return JsonResponse({"status": "ok"})


@never_cache
@require_safe
def readyz(request):
    if not health.readyz_allowed(request):
        return JsonResponse(
            {
                "status": "forbidden",
                "error": _(
                    "Readiness is answered only to READYZ_ALLOWED_NETWORKS or with "
                    "the READYZ_TOKEN bearer token."
                ),
            },
            status=403,
        )
    ready, checks = health.readiness()
    return JsonResponse(
        {"status": "ok" if ready else "fail", "checks": checks},
        status=200 if ready else 503,
    )


@security_admin_required
@require_GET
def overview(request):
    return render(
        request,
        "operations/overview.html",
        {
            "workers": health.workers_seen(),
            "worker_missing": health.worker_missing(),
            "worker_max_age": health.worker_max_age_seconds(),
            "queue": health.queue_summary(),
            "jobs": health.periodic_jobs(),
            "credential_expiries": credential_expiries(),
        },
    )
