from django.contrib.auth import views as auth_views
from django.urls import path

from example import views

urlpatterns = [
    path("", views.home, name="home"),
    path("visits/", views.visits, name="visits"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
]
