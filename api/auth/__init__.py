"""Authentication (and, beside it, authorization) of API requests."""

from timonel.api.auth.authn import (
    Authenticator,
    UserInfo,
    anonymous,
    unauthorized_status,
    user_info_dict,
)
from timonel.api.auth.tokens import add_token, ensure_admin_token, token_file

__all__ = [
    "Authenticator",
    "UserInfo",
    "add_token",
    "anonymous",
    "ensure_admin_token",
    "token_file",
    "unauthorized_status",
    "user_info_dict",
]
