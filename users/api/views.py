"""HTTP endpoints for users and tokens. Each view validates input, calls one service or
selector, and serializes the result; the rules live in users.services and users.selectors.
"""

from typing import Any, cast
from uuid import UUID

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from knox.models import AuthToken
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.permissions import AllowAny, BasePermission, IsAdminUser, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.throttling import BaseThrottle
from rest_framework.views import APIView

from core.http.conditional import PerUserCacheHeadersMixin, conditional_response
from core.http.validation import validated
from users import selectors, services
from users.api.pagination import UserCursorPagination
from users.api.permissions import SuperusersChangedOnlyBySuperusers
from users.api.serializers import (
    EmailConfirmSerializer,
    PasswordChangeSerializer,
    PasswordSetSerializer,
    SignUpSerializer,
    StaffUserCreateSerializer,
    StaffUserUpdateSerializer,
    TokenCreateSerializer,
    TokenSerializer,
    UserSerializer,
    UserUpdateSerializer,
)
from users.api.throttles import LoginIPThrottle, SignUpThrottle
from users.authentication import TokenAuthentication
from users.cache import USER_CACHE_SCHEMA, user_row_representation
from users.models import User

_user_id = OpenApiParameter("id", OpenApiTypes.UUID, OpenApiParameter.PATH)

# Conditional reads (core.http.conditional): the request header, the response headers, the 304.
_CONDITIONAL_PARAMETERS = [
    OpenApiParameter(
        "If-None-Match",
        OpenApiTypes.STR,
        OpenApiParameter.HEADER,
        description="An ETag from an earlier answer: 304 with no body while it is current.",
    ),
    OpenApiParameter(
        "ETag",
        OpenApiTypes.STR,
        OpenApiParameter.HEADER,
        response=[200, 304],
        description="Strong tag of what the answer shows (JSON answers only).",
    ),
    OpenApiParameter(
        "Cache-Control",
        OpenApiTypes.STR,
        OpenApiParameter.HEADER,
        response=True,
        description="`private, no-cache`: kept by the client only, revalidated before use.",
    ),
    OpenApiParameter(
        "Vary",
        OpenApiTypes.STR,
        OpenApiParameter.HEADER,
        response=True,
        description="`Accept, Authorization, Cookie` (with any others).",
    ),
]
_NOT_MODIFIED = OpenApiResponse(
    description="Not Modified: the If-None-Match tag is current; no body."
)


def _conditional_responses(ok: object) -> dict[int, object]:
    return {200: ok, 304: _NOT_MODIFIED}


@extend_schema_view(
    create=extend_schema(
        request=SignUpSerializer,
        description="Sign up (anonymous) or create a user (staff, who may also set flags).",
    ),
    list=extend_schema(
        description="Staff only. Each page carries an ETag (see If-None-Match).",
        parameters=[
            OpenApiParameter("email", OpenApiTypes.EMAIL),
            OpenApiParameter("is_active", OpenApiTypes.BOOL),
            OpenApiParameter("joined_after", OpenApiTypes.DATETIME),
            OpenApiParameter("joined_before", OpenApiTypes.DATETIME),
            *_CONDITIONAL_PARAMETERS,
        ],
        responses=_conditional_responses(UserSerializer(many=True)),
    ),
    retrieve=extend_schema(
        parameters=[_user_id, *_CONDITIONAL_PARAMETERS],
        responses=_conditional_responses(UserSerializer),
    ),
    partial_update=extend_schema(
        parameters=[_user_id],
        request=UserUpdateSerializer,
        description=(
            "Users change email and display_name; staff may also change flags. A new email "
            "for one's own account is not applied at once: a confirmation link is mailed to "
            "the new address (`POST /users/confirm-email/` applies it), and the response, "
            "which still shows the current email, is the same whether or not the address "
            "is taken. Staff changing another user's email apply it at once."
        ),
    ),
    destroy=extend_schema(parameters=[_user_id], description="Deactivate (soft delete)."),
)
class UserViewSet(
    PerUserCacheHeadersMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet[User]
):
    """Users: sign-up, read, change, deactivate; the list is for staff.

    Anyone but staff can reach only their own record: other ids answer 404, never 403,
    so the API does not confirm which ids exist. This class declares, for every route
    and every path through it (the cached read included), who may call it and how often.

    The reads (one user, `me`, a page of the list) carry a strong ETag and answer 304 to
    a current If-None-Match (core.http.conditional): a user's tag is made from its row's
    version, which every write increments, a page's from its rows' ids and versions and
    its links.
    """

    serializer_class = UserSerializer
    pagination_class = UserCursorPagination
    # Only well-formed (lowercase) UUIDs match the route; anything else is a plain 404.
    lookup_value_converter = "uuid"
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_permissions(self) -> list[BasePermission]:
        """Sign-up is open; the list is staff only; everything else needs a login."""
        if self.action in {"create", "confirm_email"}:
            return [AllowAny()]
        if self.action == "list":
            return [IsAdminUser()]
        if self.action in {"partial_update", "destroy", "password"}:
            return [IsAuthenticated(), SuperusersChangedOnlyBySuperusers()]
        return [IsAuthenticated()]

    def get_throttles(self) -> list[BaseThrottle]:
        """Sign-up has its own, tighter limit on top of the defaults."""
        throttles = super().get_throttles()
        if self.action == "create":
            throttles.append(SignUpThrottle())
        return throttles

    def get_queryset(self) -> QuerySet[User]:
        """Nothing: the browsable API asks for a queryset to build its filter form.

        The views read through the selectors, never through this, because what they read
        is not a queryset: one's own record is the authenticated user (no query), another
        user's comes from the user cache, and the list is rows. Visibility is decided in
        one place, `selectors.user_visible`. This returns no rows so that nothing can
        list users through it, and takes no filters so that rendering an error page
        cannot raise a second error.
        """
        return User.objects.none()

    def get_object(self) -> User:
        """The user in the URL, if the caller may see it; 404 otherwise."""
        user = selectors.user_get(user_id=self.kwargs["pk"], viewer=self._viewer())
        if user is None:
            raise NotFound()
        self.check_object_permissions(self.request, user)
        return user

    def create(self, request: Request) -> Response:
        """Sign up, or create a user as staff."""
        input_class = StaffUserCreateSerializer if request.user.is_staff else SignUpSerializer
        user = services.user_create(**validated(input_class, request.data))
        location = reverse("user-detail", kwargs={"pk": user.pk}, request=request)
        return Response(
            UserSerializer(user).data,
            status=status.HTTP_201_CREATED,
            headers={"Location": location},
        )

    def list(self, request: Request) -> Response:
        """A page of users, filtered, ordered by (date_joined, id)."""
        # Rows, not model instances, rendered as UserSerializer renders a user: on a page
        # of 50, building instances and serializing them field by field cost about a
        # third of the page's CPU.
        rows = selectors.user_list_rows(filters=request.query_params)
        page = cast(list[dict[str, Any]], self.paginate_queryset(rows) or [])
        paginator = cast(UserCursorPagination, self.paginator)
        return conditional_response(
            request,
            etag_parts=(
                "users",
                USER_CACHE_SCHEMA,
                paginator.get_next_link(),
                paginator.get_previous_link(),
                *(f"{row['id']}:{row['version']}" for row in page),
            ),
            data=lambda: (
                self.get_paginated_response([user_row_representation(row) for row in page]).data
            ),
        )

    def retrieve(self, request: Request, pk: UUID) -> Response:
        """One user, from the user cache."""
        found = selectors.user_representation_get(user_id=pk, viewer=self._viewer())
        if found is None:
            raise NotFound()
        return conditional_response(
            request, etag_parts=_user_etag_parts(pk, found.version), data=lambda: found.data
        )

    def partial_update(self, request: Request, pk: UUID) -> Response:
        """Change some fields of a user."""
        user = self.get_object()
        input_class = StaffUserUpdateSerializer if request.user.is_staff else UserUpdateSerializer
        data = validated(input_class, request.data)
        user = services.user_change(user=user, data=data, actor=self._viewer())
        return Response(UserSerializer(user).data)

    def perform_destroy(self, instance: User) -> None:
        """Deactivate the user (a soft delete); their tokens stop working."""
        services.user_deactivate(user=instance)

    @extend_schema(
        parameters=_CONDITIONAL_PARAMETERS, responses=_conditional_responses(UserSerializer)
    )
    @action(detail=False, methods=["get"])
    def me(self, request: Request) -> Response:
        """The caller."""
        viewer = self._viewer()
        return conditional_response(
            request,
            etag_parts=_user_etag_parts(viewer.pk, viewer.version),
            data=lambda: UserSerializer(viewer).data,
        )

    @extend_schema(
        parameters=[_user_id],
        request=PasswordChangeSerializer,
        responses={204: None},
        description="Change a password. The current password is required for one's own.",
    )
    @action(detail=True, methods=["post"])
    def password(self, request: Request, pk: UUID) -> Response:
        """Set a new password; other tokens of the user are revoked."""
        user = self.get_object()
        own = user.pk == request.user.pk
        data = validated(PasswordChangeSerializer if own else PasswordSetSerializer, request.data)
        services.user_set_password(
            user=user,
            password=data["password"],
            current_password=data.get("current_password"),
            keep_token=request.auth if own and isinstance(request.auth, AuthToken) else None,
        )
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        request=EmailConfirmSerializer,
        responses={204: None},
        description=(
            "Apply an email change with the token from the link mailed to the new address. "
            "Anyone holding the token may use it (it proves access to that mailbox); it "
            "expires, works once, and the address must still be free."
        ),
    )
    @action(detail=False, methods=["post"], url_path="confirm-email")
    def confirm_email(self, request: Request) -> Response:
        """Apply a confirmed email change."""
        services.user_email_change_confirm(**validated(EmailConfirmSerializer, request.data))
        return Response(status=status.HTTP_204_NO_CONTENT)

    def _viewer(self) -> User:
        # Only reached behind IsAuthenticated, where the user is never AnonymousUser.
        return cast(User, self.request.user)


def _user_etag_parts(user_id: object, version: int) -> tuple[object, ...]:
    # The same content under `/users/{id}/` and `/users/me/`: the same tag. The schema of
    # the cached record is the representation's, so a release that changes it changes tags.
    return ("user", USER_CACHE_SCHEMA, str(user_id).lower(), version)


class TokenView(PerUserCacheHeadersMixin, APIView):
    """Log in: email and password for a token. Throttled per client IP; failed attempts
    back off per client and email, and per email (users.login_throttle)."""

    authentication_classes: list[type[Any]] = []
    permission_classes = [AllowAny]
    throttle_classes = [LoginIPThrottle]

    @extend_schema(request=TokenCreateSerializer, responses={200: TokenSerializer})
    def post(self, request: Request) -> Response:
        """Issue a token. Only its hash is stored; this response is the only copy."""
        serializer = TokenCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        token, secret = services.auth_token_create(
            request=request._request, **serializer.validated_data
        )
        body = TokenSerializer({"token": secret, "expiry": token.expiry, "user": token.user}).data
        # The secret is shown once: no cache, the client's included, may keep it.
        return Response(body, headers={"Cache-Control": "no-store"})


class LogoutView(PerUserCacheHeadersMixin, APIView):
    """Log out: revoke the token that authenticated this request."""

    authentication_classes = [TokenAuthentication]
    permission_classes = [IsAuthenticated]

    @extend_schema(request=None, responses={204: None})
    def post(self, request: Request) -> Response:
        """Revoke the caller's token."""
        # TokenAuthentication is this view's only authenticator: auth is its token.
        services.auth_token_revoke(token=cast(AuthToken, request.auth))
        return Response(status=status.HTTP_204_NO_CONTENT)
