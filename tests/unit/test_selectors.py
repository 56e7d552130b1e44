"""Label and field selectors against upstream apimachinery's behaviour and wording.

Expected values come from upstream's own tests (labels/selector_test.go,
fields) and from the messages its code builds; the lengthy validation texts
are spelled out once here so a drift in any word fails a test.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from timonel.api import selectors as s
from timonel.api.errors import ApiError
from timonel.api.resources import ResourceType, by_kind

KEY_REGEX = "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]'"
NAME_PART_MSG = ("name part must consist of alphanumeric characters, '-', '_' or '.', and must "
                 "start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or "
                 f"'123-abc', regex used for validation is {KEY_REGEX})")
VALUE_MSG = ("a valid label must be an empty string or consist of alphanumeric characters, '-', "
             "'_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  "
             "or 'my_value',  or '12345', regex used for validation is "
             "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")


def rtype(group: str, kind: str) -> ResourceType:
    r = by_kind(group, kind)
    assert r is not None
    return r


POD = rtype("", "Pod")


def parse_error(text: str) -> str:
    with pytest.raises(ApiError) as e:
        s.parse_label_selector(text)
    assert e.value.code == 400
    assert e.value.reason == "BadRequest"
    return e.value.message


# ---------------------------------------------------------------------------
# Label selectors: parsing and the text upstream's String() writes back


@pytest.mark.parametrize(("text", "canonical"), [
    ("x=a,y=b,z=c", "x=a,y=b,z=c"),
    ("", ""),
    ("x!=a,y=b", "x!=a,y=b"),
    ("x=", "x="),
    ("x= ", "x="),
    ("x=,z= ", "x=,z="),
    ("x= ,z= ", "x=,z="),
    ("!x", "!x"),
    ("x>1", "x>1"),
    ("x>1,z<5", "x>1,z<5"),
    ("a==b", "a==b"),
    ("x in (foo,,baz),y,z notin ()", "x in (,baz,foo),y,z notin ()"),
    ("\rx", "x"),
    ("foo  in\t (abc)", "foo in (abc)"),
    ("x notin\n (abc)", "x notin (abc)"),
    ("x in (abc,)", "x in (,abc)"),
    ("x notin ( )", "x notin ()"),
    ("x notin (, a)", "x notin (,a)"),
    ("a ", "a"),
    ("a in (x,y,notin, z,in)", "a in (in,notin,x,y,z)"),
    ("notin=in", "notin=in"),
    ("in in (in)", "in in (in)"),
    ("this-is-a-dns.domain.com/key-with-dash", "this-is-a-dns.domain.com/key-with-dash"),
    ("0.1.2.domain/99 notin (10.10.100.1, tick.tack.clock)",
     "0.1.2.domain/99 notin (10.10.100.1,tick.tack.clock)"),
    # Requirements come out sorted by key, as upstream sorts them.
    ("x=a,a=x", "a=x,x=a"),
    ("z,y in (b, a),x!=c", "x!=c,y in (a,b),z"),
])
def test_parse_and_canonical_text(text: str, canonical: str) -> None:
    assert s.to_text(s.parse_label_selector(text)) == canonical


def test_parsed_requirements_carry_operator_and_sorted_values() -> None:
    sel = s.parse_label_selector("env in (prod, dev),tier,!canary,count>3,n<10,a==b,c!=d,e=f")
    assert sel.requirements == (
        s.Requirement("a", s.DOUBLE_EQUALS, ("b",)),
        s.Requirement("c", s.NOT_EQUALS, ("d",)),
        s.Requirement("canary", s.DOES_NOT_EXIST),
        s.Requirement("count", s.GREATER_THAN, ("3",)),
        s.Requirement("e", s.EQUALS, ("f",)),
        s.Requirement("env", s.IN, ("dev", "prod")),
        s.Requirement("n", s.LESS_THAN, ("10",)),
        s.Requirement("tier", s.EXISTS),
    )
    assert not sel.empty
    assert s.parse_label_selector("").empty


@pytest.mark.parametrize(("text", "message"), [
    ("x=a||y=b", f"unable to parse requirement: values[0][x]: Invalid value: \"a||y\": {VALUE_MSG}"),
    ("x==a==b", "found '==', expected: ',' or 'end of string'"),
    ("!x=a", "found '=', expected: ',' or 'end of string'"),
    ("x,y,", "found '', expected: identifier after ','"),
    (",x,y", "found ',', expected: !, identifier, or 'end of string'"),
    ("a in (xyz),", "found '', expected: identifier after ','"),
    ("a in (xyz)b notin ()", "found 'b', expected: ',' or 'end of string'"),
    ("(", "found '(', expected: !, identifier, or 'end of string'"),
    ("x nott in (y)",
     "unable to parse requirement: found 'nott', expected: in, notin, =, ==, !=, gt, lt"),
    ("a (", "unable to parse requirement: found '(', expected: in, notin, =, ==, !=, gt, lt"),
    ("a in (xyz abc)", "unable to parse requirement: found 'abc', expected: ',' or ')'"),
    ("a notin(", "unable to parse requirement: found '', expected: ',', ')' or identifier"),
    ("a in (b", "unable to parse requirement: found '', expected: ',' or ')'"),
    ("a in b", "unable to parse requirement: found 'b' expected: '('"),
    ("a in (=)", "unable to parse requirement: found '=', expected: ',', ')' or identifier"),
    ("a in (,=)", "unable to parse requirement: found '=', expected: ',', or identifier"),
    ("a=(b)", "unable to parse requirement: found '(', expected: identifier"),
    ("!", "unable to parse requirement: found '', expected: identifier"),
    ("!=a", "found '!=', expected: !, identifier, or 'end of string'"),
    ("x<a", "unable to parse requirement: values[0]: Invalid value: \"a\": for 'Gt', 'Lt' "
            "operators, the value must be an integer"),
    ("x>", "unable to parse requirement: values[0]: Invalid value: \"\": for 'Gt', 'Lt' "
           "operators, the value must be an integer"),
    ("x>99999999999999999999", "unable to parse requirement: values[0]: Invalid value: "
     "\"99999999999999999999\": for 'Gt', 'Lt' operators, the value must be an integer"),
    ("-a", f"unable to parse requirement: <nil>: Invalid value: \"-a\": {NAME_PART_MSG}"),
    ("a=-b", f"unable to parse requirement: values[0][a]: Invalid value: \"-b\": {VALUE_MSG}"),
    ("a in (ok,b_)",
     f"unable to parse requirement: values[0][a]: Invalid value: \"b_\": {VALUE_MSG}"),
    ("a=" + "v" * 64, "unable to parse requirement: values[0][a]: Invalid value: "
                      f"\"{'v' * 64}\": must be no more than 63 bytes"),
    ("k" * 64, f"unable to parse requirement: <nil>: Invalid value: \"{'k' * 64}\": "
               "name part must be no more than 63 bytes"),
    ("/a", "unable to parse requirement: <nil>: Invalid value: \"/a\": prefix part must be "
           "non-empty"),
    ("a/", "unable to parse requirement: <nil>: Invalid value: \"a/\": name part must be "
           f"non-empty; {NAME_PART_MSG}"),
    ("Ex.com/a", "unable to parse requirement: <nil>: Invalid value: \"Ex.com/a\": prefix part "
                 "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                 "characters, '-' or '.', and must start and end with an alphanumeric character "
                 "(e.g. 'example.com', regex used for validation is "
                 "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"),
    ("a/b/c", "unable to parse requirement: <nil>: Invalid value: \"a/b/c\": a valid label key "
              "must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
              "with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', "
              f"regex used for validation is {KEY_REGEX}) with an optional DNS subdomain prefix "
              "and '/' (e.g. 'example.com/MyName')"),
    ("a=\u00e9", f"unable to parse requirement: values[0][a]: Invalid value: \"\u00e9\": {VALUE_MSG}"),
    ("a=b\x01", "unable to parse requirement: values[0][a]: Invalid value: \"b\\x01\": "
                f"{VALUE_MSG}"),
])
def test_parse_errors_word_for_word(text: str, message: str) -> None:
    assert parse_error(text) == message


def test_a_nul_byte_ends_a_word_as_upstream_reader_does() -> None:
    assert parse_error("a\x00b") == (
        "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt")
    # A NUL where a token starts ends the input.
    assert s.to_text(s.parse_label_selector("a \x00 ,,,")) == "a"


def test_several_errors_are_aggregated_in_brackets() -> None:
    # "-1" is an integer but not a label value: one error, no brackets.
    assert parse_error("a>-1") == (
        f"unable to parse requirement: values[0][a]: Invalid value: \"-1\": {VALUE_MSG}")
    # "x_" is neither: both errors, bracketed and comma separated.
    assert parse_error("a>x_") == (
        "unable to parse requirement: [values[0]: Invalid value: \"x_\": for 'Gt', 'Lt' "
        f"operators, the value must be an integer, values[0][a]: Invalid value: \"x_\": {VALUE_MSG}]")


def test_go_quote() -> None:
    assert s.go_quote('a"b\\c\n\t\x7f\u00e9\u2028\U0001F600') == (
        '"a\\"b\\\\c\\n\\t\\x7f\u00e9\\u2028\U0001F600"')


# ---------------------------------------------------------------------------
# Label selectors: matching


LABELS = {"foo": "bar", "baz": "blah", "n": "5", "empty": ""}


@pytest.mark.parametrize(("text", "expected"), [
    ("", True),
    ("foo=bar", True),
    ("foo==bar,baz=blah", True),
    ("foo=blah", False),
    ("foo=bar,foobar=bar,baz=blah", False),
    ("foo!=blah", True),
    ("missing!=x", True),
    ("foo in (bar,baz)", True),
    ("foo in (x)", False),
    ("missing in (x)", False),
    ("foo notin (bar)", False),
    ("missing notin (x)", True),
    ("foo", True),
    ("missing", False),
    ("!missing", True),
    ("!foo", False),
    ("empty", True),
    ("empty=", True),
    ("empty in ()", True),
    ("n>4", True),
    ("n>5", False),
    ("n<6", True),
    ("n<5", False),
    ("foo>1", False),  # not a number: no match
    ("missing<1", False),
])
def test_matches(text: str, expected: bool) -> None:
    assert s.matches(s.parse_label_selector(text), LABELS) is expected


def test_matches_none_labels_and_nothing_selector() -> None:
    assert s.matches(s.parse_label_selector("!a"), None)
    assert not s.matches(s.parse_label_selector("a"), None)
    assert not s.matches(s.NOTHING, {"a": "b"})
    assert s.matches(s.EVERYTHING, None)


# ---------------------------------------------------------------------------
# metav1.LabelSelector dicts


def test_from_label_selector_dict() -> None:
    sel = s.from_label_selector_dict({
        "matchLabels": {"tier": "web", "app": "shop"},
        "matchExpressions": [
            {"key": "env", "operator": "In", "values": ["prod", "dev"]},
            {"key": "track", "operator": "NotIn", "values": ["canary"]},
            {"key": "owner", "operator": "Exists"},
            {"key": "legacy", "operator": "DoesNotExist"},
        ],
    })
    assert s.to_text(sel) == "app=shop,env in (dev,prod),!legacy,owner,tier=web,track notin (canary)"
    assert s.matches(sel, {"tier": "web", "app": "shop", "env": "dev", "owner": "x"})
    assert not s.matches(sel, {"tier": "web", "app": "shop", "env": "dev"})
    assert s.from_label_selector_dict(None) is s.NOTHING
    assert s.from_label_selector_dict({}).empty
    assert s.from_label_selector_dict({"matchLabels": {}, "matchExpressions": []}).empty


@pytest.mark.parametrize(("sel", "message"), [
    ({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]},
     '"Gt" is not a valid label selector operator'),
    ({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]},
     "values: Invalid value: []string{}: for 'in', 'notin' operators, values set can't be empty"),
    ({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x", "y"]}]},
     'values: Invalid value: []string{"x", "y"}: values set must be empty for exists and does '
     "not exist"),
    ({"matchLabels": {"a b": "c"}},
     f'key: Invalid value: "a b": {NAME_PART_MSG}'),
    ({"matchLabels": {"a": "c d"}},
     f'values[0][a]: Invalid value: "c d": {VALUE_MSG}'),
])
def test_from_label_selector_dict_errors(sel: dict, message: str) -> None:
    with pytest.raises(ApiError) as e:
        s.from_label_selector_dict(sel)
    assert e.value.code == 400
    assert e.value.message == message


def test_selector_from_set() -> None:
    sel = s.selector_from_set({"b": "2", "a": "1"})
    assert s.to_text(sel) == "a=1,b=2"
    assert s.selector_from_set({}).empty


# ---------------------------------------------------------------------------
# Property tests

_NAME = st.from_regex(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,12}[A-Za-z0-9])?", fullmatch=True)
_DNS_LABEL = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,8}[a-z0-9])?", fullmatch=True)
_PREFIX = st.lists(_DNS_LABEL, min_size=1, max_size=3).map(".".join)
KEYS = st.one_of(_NAME, st.tuples(_PREFIX, _NAME).map("/".join))
VALUES = st.one_of(st.just(""), _NAME)


@st.composite
def requirements(draw: st.DrawFn) -> s.Requirement:
    key = draw(KEYS)
    op = draw(st.sampled_from([s.IN, s.NOT_IN, s.EQUALS, s.DOUBLE_EQUALS, s.NOT_EQUALS, s.EXISTS,
                               s.DOES_NOT_EXIST, s.GREATER_THAN, s.LESS_THAN]))
    if op in (s.IN, s.NOT_IN):
        values = tuple(sorted(draw(st.sets(VALUES, min_size=1, max_size=4))))
    elif op in (s.EQUALS, s.DOUBLE_EQUALS, s.NOT_EQUALS):
        values = (draw(VALUES),)
    elif op in (s.GREATER_THAN, s.LESS_THAN):
        values = (str(draw(st.integers(0, 2**63 - 1))),)
    else:
        values = ()
    return s.Requirement(key, op, values)


@settings(max_examples=300, deadline=None)
@given(st.lists(requirements(), max_size=5))
def test_text_round_trips(reqs: list[s.Requirement]) -> None:
    sel = s.LabelSelector(tuple(sorted(reqs, key=lambda r: r.key)))
    assert s.parse_label_selector(s.to_text(sel)) == sel


_SELECTOR_ALPHABET = st.sampled_from([*"ab=!(),<> \t\n\x00-_./1", "in", "notin", "é"])


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(), st.lists(_SELECTOR_ALPHABET, max_size=20).map("".join)))
def test_random_text_raises_only_api_errors(text: str) -> None:
    try:
        sel = s.parse_label_selector(text)
    except ApiError as e:
        assert e.code == 400
    else:
        # Whatever parses prints back to text that parses to the same selector.
        assert s.parse_label_selector(s.to_text(sel)) == sel
    try:
        s.parse_field_selector(text, POD)
    except ApiError as e:
        assert e.code == 400


# ---------------------------------------------------------------------------
# Field selectors

def field_error(text: str, group: str, kind: str) -> str:
    with pytest.raises(ApiError) as e:
        s.parse_field_selector(text, rtype(group, kind))
    assert e.value.code == 400
    return e.value.message


def test_field_operators_and_escapes() -> None:
    sel = s.parse_field_selector("metadata.name=a\\,b\\=c\\\\d,status.phase!=Running,"
                                 "spec.nodeName==n1", rtype("", "Pod"))
    assert sel.requirements == (
        s.FieldRequirement("metadata.name", "a,b=c\\d"),
        s.FieldRequirement("spec.nodeName", "n1"),
        s.FieldRequirement("status.phase", "Running", negated=True),
    )
    pod = {"metadata": {"name": "a,b=c\\d"}, "spec": {"nodeName": "n1"},
           "status": {"phase": "Pending"}}
    assert s.field_matches(sel, pod)
    assert not s.field_matches(sel, {**pod, "status": {"phase": "Running"}})
    assert s.escape_field_value("a,b=c\\d") == "a\\,b\\=c\\\\d"
    assert s.parse_field_selector("", rtype("", "Pod")).requirements == ()
    assert s.parse_field_selector(",,", rtype("", "Pod")).requirements == ()


@pytest.mark.parametrize(("text", "message"), [
    ("a", "invalid selector: 'a'; can't understand 'a'"),
    ("metadata.name=x,oops", "invalid selector: 'metadata.name=x,oops'; can't understand 'oops'"),
    ("metadata.name=a=b", "invalid field selector: unescaped character in value: 61"),
    ("metadata.name=a\\q", "invalid field selector: invalid escape sequence: \\q"),
    ("metadata.name=a\\", "invalid field selector: invalid escape sequence: \\"),
    # Syntax is checked for every term before any field name.
    ("foo=bar,zz", "invalid selector: 'foo=bar,zz'; can't understand 'zz'"),
    ("foo=bar", "field label not supported: foo"),
    ("metadata.name =x", "field label not supported: metadata.name "),
])
def test_field_syntax_errors(text: str, message: str) -> None:
    assert field_error(text, "", "Pod") == message


@pytest.mark.parametrize(("group", "kind", "text", "message"), [
    ("", "ConfigMap", "data.x=1",
     '"data.x" is not a known field selector: only "metadata.name", "metadata.namespace"'),
    ("apps", "Deployment", "spec.replicas=1",
     '"spec.replicas" is not a known field selector: only "metadata.name", "metadata.namespace"'),
    ("batch", "Job", "status.failed=1", 'field label "status.failed" not supported for batchv1.Job'),
    ("", "Node", "metadata.namespace=x", "field label not supported: metadata.namespace"),
    ("", "Namespace", "metadata.namespace=x", "field label not supported: metadata.namespace"),
    ("", "Secret", "data=x", "field label not supported: data"),
    ("", "Event", "regarding.name=x", "field label not supported: regarding.name"),
    ("events.k8s.io", "Event", "involvedObject.name=x",
     "field label not supported: involvedObject.name"),
    ("apps", "ReplicaSet", "status.readyReplicas=1",
     '"status.readyReplicas" is not a known field selector: only "metadata.name", '
     '"metadata.namespace"'),
])
def test_unsupported_fields_per_kind(group: str, kind: str, text: str, message: str) -> None:
    assert field_error(text, group, kind) == message


POD_OBJ = {
    "metadata": {"name": "web-1", "namespace": "shop"},
    "spec": {"nodeName": "node-a", "restartPolicy": "Always", "schedulerName": "default-scheduler",
             "serviceAccountName": "default", "hostNetwork": True},
    "status": {"phase": "Running", "podIP": "10.0.0.5", "podIPs": [{"ip": "10.0.0.5"}],
               "nominatedNodeName": "node-b"},
}


@pytest.mark.parametrize(("text", "expected"), [
    ("metadata.name=web-1", True),
    ("metadata.namespace=shop", True),
    ("metadata.namespace!=shop", False),
    ("spec.nodeName=node-a", True),
    ("spec.host=node-a", True),  # old clients' name for spec.nodeName
    ("spec.restartPolicy=Always", True),
    ("spec.schedulerName=default-scheduler", True),
    ("spec.serviceAccountName=default", True),
    ("spec.hostNetwork=true", True),
    ("spec.hostNetwork=false", False),
    ("status.phase=Running", True),
    ("status.podIP=10.0.0.5", True),
    ("status.nominatedNodeName=node-b", True),
    # Accepted by the conversion, absent from the field set: reads as "".
    ("status.podIPs=10.0.0.5", False),
    ("status.podIPs=", True),
])
def test_pod_fields(text: str, expected: bool) -> None:
    assert s.field_matches(s.parse_field_selector(text, rtype("", "Pod")), POD_OBJ) is expected


def test_pod_defaults_when_fields_are_missing() -> None:
    sel = s.parse_field_selector("spec.hostNetwork=false,spec.nodeName=,status.podIP=",
                                 rtype("", "Pod"))
    assert s.field_matches(sel, {"metadata": {"name": "p"}})
    only_ips = {"metadata": {"name": "p"}, "status": {"podIPs": [{"ip": "fd00::1"}]}}
    assert s.field_matches(s.parse_field_selector("status.podIP=fd00::1", rtype("", "Pod")),
                           only_ips)


CORE_EVENT = {
    "metadata": {"name": "web-1.17a", "namespace": "shop"},
    "involvedObject": {"kind": "Pod", "namespace": "shop", "name": "web-1", "uid": "u-1",
                       "apiVersion": "v1", "resourceVersion": "42", "fieldPath": "spec.containers{web}"},
    "reason": "BackOff", "type": "Warning", "source": {"component": "kubelet"},
    "reportingComponent": "kubelet",
}


def test_core_event_fields_as_kubectl_describe_asks() -> None:
    ev = rtype("", "Event")
    sel = s.parse_field_selector(
        "involvedObject.name=web-1,involvedObject.namespace=shop,involvedObject.uid=u-1", ev)
    assert s.field_matches(sel, CORE_EVENT)
    for text in ("involvedObject.kind=Pod", "involvedObject.apiVersion=v1",
                 "involvedObject.resourceVersion=42", "involvedObject.fieldPath=spec.containers{web}",
                 "reason=BackOff", "type=Warning", "source=kubelet", "reportingComponent=kubelet",
                 "metadata.name=web-1.17a", "metadata.namespace=shop"):
        assert s.field_matches(s.parse_field_selector(text, ev), CORE_EVENT), text
    assert not s.field_matches(s.parse_field_selector("involvedObject.uid=other", ev), CORE_EVENT)
    # source falls back to the reporting controller of new-style events.
    no_source = {**CORE_EVENT, "source": {}, "reportingComponent": "kubelet"}
    assert s.field_matches(s.parse_field_selector("source=kubelet", ev), no_source)


def test_events_k8s_io_fields_map_to_the_same_set() -> None:
    ev = rtype("events.k8s.io", "Event")
    event = {"metadata": {"name": "e", "namespace": "shop"},
             "regarding": {"kind": "Pod", "name": "web-1", "namespace": "shop", "uid": "u-1"},
             "reason": "Started", "type": "Normal", "reportingController": "kubelet"}
    sel = s.parse_field_selector("regarding.kind=Pod,regarding.name=web-1,"
                                 "reportingController=kubelet,source=kubelet,type=Normal", ev)
    assert sel.requirements[0].field.startswith("involvedObject.")
    assert s.field_matches(sel, event)
    assert not s.field_matches(s.parse_field_selector("regarding.uid=x", ev), event)


@pytest.mark.parametrize(("group", "kind", "obj", "text", "expected"), [
    ("", "Secret", {"metadata": {"name": "t"}, "type": "kubernetes.io/tls"},
     "type=kubernetes.io/tls", True),
    ("", "Secret", {"metadata": {"name": "t"}, "type": "Opaque"}, "type!=Opaque", False),
    ("", "Node", {"metadata": {"name": "n"}, "spec": {"unschedulable": True}},
     "spec.unschedulable=true", True),
    ("", "Node", {"metadata": {"name": "n"}, "spec": {}}, "spec.unschedulable=false", True),
    ("", "Node", {"metadata": {"name": "n"}}, "metadata.name=n", True),
    ("", "Namespace", {"metadata": {"name": "ns"}, "status": {"phase": "Terminating"}},
     "status.phase=Terminating", True),
    ("batch", "Job", {"metadata": {"name": "j"}, "status": {"succeeded": 2}},
     "status.successful=2", True),
    ("batch", "Job", {"metadata": {"name": "j"}}, "status.successful=0", True),
    ("apps", "ReplicaSet", {"metadata": {"name": "r"}, "status": {"replicas": 3}},
     "status.replicas=3", True),
    ("apps", "ReplicaSet", {"metadata": {"name": "r"}, "status": {}}, "status.replicas=0", True),
    ("", "Service", {"metadata": {"name": "s"}, "spec": {"type": "NodePort", "clusterIP": "10.96.0.9"}},
     "spec.type=NodePort,spec.clusterIP=10.96.0.9", True),
    ("", "ConfigMap", {"metadata": {"name": "c", "namespace": "d"}},
     "metadata.name=c,metadata.namespace=d", True),
    ("rbac.authorization.k8s.io", "ClusterRole", {"metadata": {"name": "admin"}},
     "metadata.namespace=", True),
    ("rbac.authorization.k8s.io", "ClusterRole", {"metadata": {"name": "admin"}},
     "metadata.namespace=default", False),
])
def test_fields_per_kind(group: str, kind: str, obj: dict, text: str, expected: bool) -> None:
    assert s.field_matches(s.parse_field_selector(text, rtype(group, kind)), obj) is expected


def test_field_index_value() -> None:
    pod = rtype("", "Pod")
    assert s.field_index_value(s.parse_field_selector("metadata.name=web", pod)) == (
        "metadata.name", "web")
    assert s.field_index_value(s.parse_field_selector("spec.nodeName=n1,metadata.name=web",
                                                      pod)) == ("metadata.name", "web")
    assert s.field_index_value(s.parse_field_selector("spec.host=n1", pod)) == (
        "spec.nodeName", "n1")
    assert s.field_index_value(s.parse_field_selector("metadata.name!=web", pod)) is None
    assert s.field_index_value(s.parse_field_selector("status.phase=Running", pod)) is None
    assert s.field_index_value(s.parse_field_selector("metadata.name==", pod)) == (
        "metadata.name", "")


@pytest.mark.parametrize("sel", [
    "app=web", {"matchLabels": ["app"]}, {"matchLabels": {"app": 1}},
    {"matchExpressions": {"key": "a"}}, {"matchExpressions": [{"key": 1, "operator": "Exists"}]},
    {"matchExpressions": [{"key": "a", "operator": "In", "values": "ab"}]},
])
def test_malformed_label_selector_dicts_are_bad_requests(sel: Any) -> None:
    with pytest.raises(ApiError) as e:
        s.from_label_selector_dict(sel)
    assert e.value.code == 400


_SHAPES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=3)),
    lambda inner: st.one_of(st.lists(inner, max_size=2), st.dictionaries(st.sampled_from([
        "metadata", "name", "namespace", "spec", "status", "podIP", "podIPs", "ip", "nodeName",
        "hostNetwork", "involvedObject", "regarding", "source", "deprecatedSource", "component",
        "type", "replicas", "succeeded", "unschedulable", "phase"]), inner, max_size=4)),
    max_leaves=15)
_FIELD_CASES = [("", "Pod", "spec.nodeName=a,status.podIP=,spec.hostNetwork=false"),
                ("", "Event", "involvedObject.name=a,source=b"),
                ("events.k8s.io", "Event", "regarding.name=a,source=b"),
                ("", "Node", "spec.unschedulable=true"), ("batch", "Job", "status.successful=1"),
                ("apps", "ReplicaSet", "status.replicas=1"), ("", "Service", "spec.type=x"),
                ("", "Secret", "type=x"), ("", "Namespace", "status.phase=x")]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(_FIELD_CASES), st.dictionaries(st.sampled_from(
    ["metadata", "spec", "status", "involvedObject", "regarding", "source", "deprecatedSource",
     "type"]), _SHAPES, max_size=5))
def test_field_matching_never_fails_on_odd_shapes(case: tuple[str, str, str],
                                                  obj: dict[str, Any]) -> None:
    group, kind, text = case
    assert s.field_matches(s.parse_field_selector(text, rtype(group, kind)), obj) in (True, False)
