from django.http import HttpResponse
from django.shortcuts import render


def home(request):
    return render(request, "home.html")


async def visits(request):
    """Counts visits with the async session API (Django 5.1+)."""
    count = await request.session.aget("visits", 0) + 1
    await request.session.aset("visits", count)
    return HttpResponse(f"visits: {count}", content_type="text/plain")
