"""Name and key syntax checks, with k8s.io/apimachinery's messages.

Each `is_*` returns the list of problems (empty when valid), so callers turn
each into one `Invalid value` cause, as upstream does.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from timonel.api.resources import ResourceType

NameCheck = Callable[[str, bool], list[str]]

DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_SUBDOMAIN_FMT = DNS1123_LABEL_FMT + "(\\." + DNS1123_LABEL_FMT + ")*"
DNS1035_LABEL_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
LABEL_KEY_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
LABEL_VALUE_FMT = "(" + LABEL_KEY_FMT + ")?"
CONFIG_MAP_KEY_FMT = "[-._a-zA-Z0-9]+"

_DNS1123_LABEL = re.compile(DNS1123_LABEL_FMT)
_DNS1123_SUBDOMAIN = re.compile(DNS1123_SUBDOMAIN_FMT)
_DNS1035_LABEL = re.compile(DNS1035_LABEL_FMT)
_LABEL_KEY = re.compile(LABEL_KEY_FMT)
_LABEL_VALUE = re.compile(LABEL_VALUE_FMT)
_CONFIG_MAP_KEY = re.compile(CONFIG_MAP_KEY_FMT)
_PORT_NAME_CHARS = re.compile("[-a-z0-9]+")
_HAS_LETTER = re.compile("[a-z]")

_DNS1123_LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric "
                      "characters or '-', and must start and end with an alphanumeric character")
_DNS1123_SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                          "characters, '-' or '.', and must start and end with an alphanumeric "
                          "character")
_DNS1035_LABEL_MSG = ("a DNS-1035 label must consist of lower case alphanumeric characters or "
                      "'-', start with an alphabetic character, and end with an alphanumeric "
                      "character")
_LABEL_KEY_MSG = ("must consist of alphanumeric characters, '-', '_' or '.', and must start and "
                  "end with an alphanumeric character")
_LABEL_VALUE_MSG = ("a valid label must be an empty string or consist of alphanumeric characters, "
                    "'-', '_' or '.', and must start and end with an alphanumeric character")
_CONFIG_MAP_KEY_MSG = "a valid config key must consist of alphanumeric characters, '-', '_' or '.'"


def regex_error(msg: str, fmt: str, *examples: str) -> str:
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    shown = " or ".join(f"'{e}', " for e in examples)
    return f"{msg} (e.g. {shown}regex used for validation is '{fmt}')"


def max_len_error(n: int) -> str:
    # Newer apimachinery counts (and says) bytes: Go's len() of a string.
    return f"must be no more than {n} bytes"


def byte_len(s: str) -> int:
    return len(s.encode("utf-8", "surrogatepass"))


def inclusive_range_error(lo: int, hi: int) -> str:
    return f"must be between {lo} and {hi}, inclusive"


def is_dns1123_label(v: str) -> list[str]:
    errs = []
    if byte_len(v) > 63:
        errs.append(max_len_error(63))
    if not _DNS1123_LABEL.fullmatch(v):
        if _DNS1123_SUBDOMAIN.fullmatch(v):
            errs.append("must not contain dots")
        else:
            errs.append(regex_error(_DNS1123_LABEL_MSG, DNS1123_LABEL_FMT, "my-name", "123-abc"))
    return errs


def is_dns1123_subdomain(v: str) -> list[str]:
    errs = []
    if byte_len(v) > 253:
        errs.append(max_len_error(253))
    if not _DNS1123_SUBDOMAIN.fullmatch(v):
        errs.append(regex_error(_DNS1123_SUBDOMAIN_MSG, DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errs


def is_dns1035_label(v: str) -> list[str]:
    errs = []
    if len(v) > 63:
        errs.append(max_len_error(63))
    if not _DNS1035_LABEL.fullmatch(v):
        errs.append(regex_error(_DNS1035_LABEL_MSG, DNS1035_LABEL_FMT, "my-name", "abc-123"))
    return errs


def is_qualified_name(v: str) -> list[str]:
    """A label key: optional DNS subdomain prefix and '/', then a 63-char name."""
    errs: list[str] = []
    parts = v.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            errs.extend("prefix part " + m for m in is_dns1123_subdomain(prefix))
    else:
        return ["a valid label key " + regex_error(_LABEL_KEY_MSG, LABEL_KEY_FMT, "MyName",
                                                   "my.name", "123-abc")
                + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
    if not name:
        errs.append("name part must be non-empty")
    elif byte_len(name) > 63:
        errs.append("name part " + max_len_error(63))
    if not _LABEL_KEY.fullmatch(name):
        errs.append("name part " + regex_error(_LABEL_KEY_MSG, LABEL_KEY_FMT, "MyName", "my.name",
                                               "123-abc"))
    return errs


def is_label_value(v: str) -> list[str]:
    errs = []
    if byte_len(v) > 63:
        errs.append(max_len_error(63))
    if not _LABEL_VALUE.fullmatch(v):
        errs.append(regex_error(_LABEL_VALUE_MSG, LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


def is_valid_port_num(port: int) -> list[str]:
    return [] if 1 <= port <= 65535 else [inclusive_range_error(1, 65535)]


def is_valid_port_name(port: str) -> list[str]:
    """IANA_SVC_NAME: 15 lowercase alphanumerics or '-', at least one letter."""
    errs = []
    if len(port) > 15:
        errs.append(max_len_error(15))
    if not _PORT_NAME_CHARS.fullmatch(port):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not _HAS_LETTER.search(port):
        errs.append("must contain at least one letter (a-z)")
    if "--" in port:
        errs.append("must not contain consecutive hyphens")
    if port and (port[0] == "-" or port[-1] == "-"):
        errs.append("must not begin or end with a hyphen")
    return errs


def _chdir_prefix(v: str) -> list[str]:
    if v == ".":
        return ["must not be '.'"]
    if v == "..":
        return ["must not be '..'"]
    if v.startswith(".."):
        return ["must not start with '..'"]
    return []


def is_config_map_key(v: str) -> list[str]:
    errs = []
    if len(v) > 253:
        errs.append(max_len_error(253))
    if not _CONFIG_MAP_KEY.fullmatch(v):
        errs.append(regex_error(_CONFIG_MAP_KEY_MSG, CONFIG_MAP_KEY_FMT, "key.name", "KEY_NAME",
                                "key-name"))
    return errs + _chdir_prefix(v)


def is_env_var_name(v: str) -> list[str]:
    """The relaxed rule (GA upstream): printable ASCII except '='."""
    errs = []
    if not v:
        errs.append("environment variable name must be non-empty")
    if any(not (32 <= ord(c) < 127) or c == "=" for c in v):
        errs.append("a valid environment variable name must consist only of printable ASCII "
                    "characters other than '='")
    return errs


# -- object names, per kind ------------------------------------------------------


def _mask_trailing_dash(name: str) -> str:
    # generateName prefixes may end in '-': a random suffix follows.
    return name[:-2] + "a" if name.endswith("-") else name


def name_is_dns_subdomain(name: str, prefix: bool) -> list[str]:
    return is_dns1123_subdomain(_mask_trailing_dash(name) if prefix else name)


def name_is_dns_label(name: str, prefix: bool) -> list[str]:
    return is_dns1123_label(_mask_trailing_dash(name) if prefix else name)


def name_is_dns1035_label(name: str, prefix: bool) -> list[str]:
    return is_dns1035_label(_mask_trailing_dash(name) if prefix else name)


def name_is_path_segment(name: str, prefix: bool) -> list[str]:
    """RBAC names only need to be safe as one URL path segment."""
    if not prefix:
        for bad in (".", ".."):
            if name == bad:
                return [f"may not be '{bad}'"]
    return [f"may not contain '{c}'" for c in ("/", "%") if c in name]


def name_is_cronjob(name: str, prefix: bool) -> list[str]:
    errs = name_is_dns_subdomain(name, prefix)
    # Job names get an 11-character suffix and must still fit a DNS-1035 label.
    if not prefix and len(name) > 52:
        errs.append(max_len_error(52))
    return errs


_NAME_CHECKS: dict[tuple[str, str], NameCheck] = {
    ("", "Namespace"): name_is_dns_label,
    ("", "Service"): name_is_dns1035_label,
    ("batch", "CronJob"): name_is_cronjob,
    ("rbac.authorization.k8s.io", "Role"): name_is_path_segment,
    ("rbac.authorization.k8s.io", "RoleBinding"): name_is_path_segment,
    ("rbac.authorization.k8s.io", "ClusterRole"): name_is_path_segment,
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): name_is_path_segment,
}


def name_check(rtype: ResourceType) -> NameCheck:
    """How upstream validates metadata.name for this kind (DNS subdomain unless listed)."""
    return _NAME_CHECKS.get((rtype.group, rtype.kind), name_is_dns_subdomain)
