"""The account routes of seed 000 §2, under ``/atlas`` and ``/krako``, in the seed's
spelling and in lower case (``auth/sign-In`` and ``auth/sign-in``)."""
from __future__ import annotations

from aiohttp import web

from common.errors import AuthenticationFailed, NotOffered
from manager.api.problems import json_response, read_json_object
from manager.atlas.accounts import accounts_of
from manager.atlas.identity import SIGN_IN, bearer_token, require_account
from manager.atlas.paths import PREFIXES


async def sign_up(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    account = await accounts_of(request.app).sign_up(
        body.get("email"), body.get("password"), body.get("nickname"))
    return json_response({"userId": str(account.id)}, status=201)


async def sign_in(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    email = body.get("id", body.get("email"))
    pair = await accounts_of(request.app).sign_in(email, body.get("password"),
                                                  request.remote or "unknown")
    return json_response({"accessToken": pair.access, "refreshToken": pair.refresh},
                         status=201)


async def sign_out(request: web.Request) -> web.Response:
    await require_account(request)
    sign_in_id = request.get(SIGN_IN)
    if sign_in_id is None:
        raise AuthenticationFailed("sign-out needs the Bearer access token of a sign-in")
    await accounts_of(request.app).sign_out(sign_in_id)
    return json_response({"message": "signed out"})


async def resend(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    await accounts_of(request.app).resend_confirmation(body.get("email"))
    return json_response({"message": "verification email sent"}, status=201)


async def confirm_email(request: web.Request) -> web.Response:
    q = request.query
    await accounts_of(request.app).confirm_email(q.get("email"), q.get("userId"),
                                                 q.get("token"))
    return json_response({"message": "email confirmed"})


async def reset_password(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    await accounts_of(request.app).reset_password(body.get("email"))
    return json_response({"message": "temporary password sent"}, status=201)


async def change_password(request: web.Request) -> web.Response:
    account = await require_account(request)
    body = await read_json_object(request)
    await accounts_of(request.app).change_password(account, body.get("password"),
                                                   request.get(SIGN_IN))
    return json_response({"message": "password changed"})


async def delete_user(request: web.Request) -> web.Response:
    account = await require_account(request)
    await accounts_of(request.app).delete(account)
    return json_response({"message": "account deleted"})


async def refresh(request: web.Request) -> web.Response:
    token = bearer_token(request.headers.get("Authorization"))
    if token is None:
        raise AuthenticationFailed("expected: Authorization: Bearer <refreshToken>")
    access = await accounts_of(request.app).refresh(token)
    return json_response({"accessToken": access})


async def me(request: web.Request) -> web.Response:
    account = await require_account(request)
    return json_response({"nickname": account.nickname, "email": account.email,
                          "userId": str(account.id)})


async def google(request: web.Request) -> web.Response:
    raise NotOffered("Google sign-in is not offered by this server (no Google "
                             "client is configured); sign up with an email and password")


ROUTES: list[tuple[str, tuple[str, ...], object]] = [
    ("POST", ("auth/sign-up",), sign_up),
    ("POST", ("auth/sign-In", "auth/sign-in"), sign_in),
    ("POST", ("auth/sign-out",), sign_out),
    ("POST", ("auth/confirmation-emails/resend",), resend),
    ("GET", ("auth/confirm-email",), confirm_email),
    ("POST", ("auth/reset-password",), reset_password),
    ("PATCH", ("auth/password",), change_password),
    ("POST", ("auth/password",), change_password),  # the seed's table says POST
    ("DELETE", ("auth/user",), delete_user),
    ("POST", ("refresh/accessToken", "refresh/accesstoken"), refresh),
    ("GET", ("me",), me),
    ("POST", ("auth/google",), google),
]


def add_routes(app: web.Application) -> None:
    for prefix in PREFIXES:
        for method, paths, handler in ROUTES:
            for path in paths:
                app.router.add_route(method, f"{prefix}/{path}", handler)  # type: ignore[arg-type]
