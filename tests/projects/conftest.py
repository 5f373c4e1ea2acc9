"""Users in every role, and projects for them."""

import pytest
from django.contrib.auth.models import Group, User

from integrations.permissions import SECURITY_ADMINS_GROUP
from projects.models import Membership, Project, Role


@pytest.fixture
def security_admin(db):
    user = User.objects.create_user("sam", password="pw-sam-123456")
    group, _ = Group.objects.get_or_create(name=SECURITY_ADMINS_GROUP)
    user.groups.add(group)
    return user


@pytest.fixture
def owner(db):
    return User.objects.create_user("olivia", password="pw-olivia-123456")


@pytest.fixture
def member(db):
    return User.objects.create_user("mike", password="pw-mike-123456")


@pytest.fixture
def outsider(db):
    return User.objects.create_user("otto", password="pw-otto-123456")


@pytest.fixture
def project(db, owner, member):
    project = Project.objects.create(name="Shop", slug="shop")
    Membership.objects.create(project=project, user=owner, role=Role.OWNER)
    Membership.objects.create(project=project, user=member, role=Role.MEMBER)
    return project


@pytest.fixture
def other_project(db, outsider):
    project = Project.objects.create(name="Payroll", slug="payroll")
    Membership.objects.create(project=project, user=outsider, role=Role.OWNER)
    return project


def client_for(client, user):
    client.force_login(user)
    return client
