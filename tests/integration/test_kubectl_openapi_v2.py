"""`/openapi/v2` as the real kubectl reads it: client-side validation of a `kind: List`.

kubectl hands validation of a resource to the server (found through OpenAPI
v3), but a List is no resource: kubectl validates its items itself against
`/openapi/v2`, fetched as gnostic protobuf. Before the server served it, every
`kubectl apply -f list.yaml` failed with "the server could not find the
requested resource".
"""

from __future__ import annotations

import hashlib

import pytest

from tests.integration.conftest import ApiServer
from tests.integration.test_kubectl import kubectl, write
from timonel.api.server import openapi_v2

__all__ = ["kubectl"]  # the fixture, shared with test_kubectl.py (pinned and system kubectl)

LIST = """
apiVersion: v1
kind: List
metadata: {resourceVersion: ""}
items:
- apiVersion: v1
  kind: ConfigMap
  metadata:
    name: settings
    labels: {app: web}
  data: {mode: "{mode}"}
- apiVersion: apps/v1
  kind: Deployment
  metadata:
    name: web
    labels: {app: web}
  spec:
    replicas: 1
    selector: {matchLabels: {app: web}}
    template:
      metadata: {labels: {app: web}}
      spec:
        containers:
        - name: main
          image: {image}
          ports: [{containerPort: 8080, name: http}]
          # A string: a number is stored as the string "1" (as upstream), so kubectl's
          # three-way diff would see a change on every apply (kubernetes#66450).
          resources: {limits: {cpu: "1", memory: 64Mi}}
          envFrom: [{configMapRef: {name: settings}}]
- apiVersion: v1
  kind: Service
  metadata: {name: web}
  spec:
    selector: {app: web}
    ports: [{name: web, port: 80, targetPort: http}, {name: alt, port: 81, targetPort: 8080}]
"""


def list_yaml(mode: str = "a", image: str = "busybox:1.36") -> str:
    """A ConfigMap, a Deployment (a quantity given as a number) and a Service
    (IntOrString given both ways: upstream's v2 publishes both as strings)."""
    return LIST.replace("{mode}", mode).replace("{image}", image)


def test_apply_list_create_unchanged_configure(kubectl, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path, "list.yaml", list_yaml())
    out = kubectl("apply", "-f", path)
    assert "configmap/settings created" in out and "deployment.apps/web created" in out, out
    assert "service/web created" in out, out

    out = kubectl("apply", "-f", path)
    assert "configmap/settings unchanged" in out and "deployment.apps/web unchanged" in out, out

    path = write(tmp_path, "list.yaml", list_yaml(mode="b", image="busybox:1.35"))
    out = kubectl("apply", "-f", path)
    assert "configmap/settings configured" in out and "deployment.apps/web configured" in out, out
    assert kubectl("get", "cm", "settings", "-o", "jsonpath={.data.mode}") == "b"
    image = kubectl("get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image}")
    assert image == "busybox:1.35"


def test_apply_list_with_a_numeric_quantity(kubectl, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`cpu: 2` (a JSON number) passes client-side validation and is stored as the
    string "2"; like upstream, a re-apply then reports the Deployment configured."""
    path = write(tmp_path, "list.yaml", list_yaml().replace('cpu: "1"', "cpu: 2"))
    assert "deployment.apps/web" in kubectl("apply", "-f", path)
    cpu = kubectl("get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[0].resources.limits.cpu}")
    assert cpu == "2"
    assert "deployment.apps/web configured" in kubectl("apply", "-f", path)


def test_apply_list_written_by_get_round_trips(kubectl, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """What `kubectl get -o yaml` writes for several objects (status, managedFields,
    null timestamps and all) must pass validation and apply back unchanged."""
    kubectl("apply", "-f", write(tmp_path, "list.yaml", list_yaml()))
    dumped = kubectl("get", "cm,deploy", "-o", "yaml")
    assert "kind: List" in dumped
    path = tmp_path / "dumped.yaml"
    path.write_text(dumped)
    out = kubectl("apply", "-f", str(path))
    assert "configmap/settings unchanged" in out or "configmap/settings configured" in out, out


def test_apply_list_with_unknown_field_is_refused_client_side(kubectl, tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = list_yaml().replace("  data: {mode:", "  bogus: 1\n  data: {mode:")
    bad = bad.replace("          ports:", "          portz: [80]\n          ports:")
    path = write(tmp_path, "bad.yaml", bad)
    out = kubectl("apply", "-f", path, check=False)
    assert f'error validating "{path}"' in out, out
    # kubectl's own wording, as against a real cluster: every item's errors, with paths.
    assert 'ValidationError(ConfigMap): unknown field "bogus" in io.k8s.api.core.v1.ConfigMap' in out, out
    assert ('ValidationError(Deployment.spec.template.spec.containers[0]): unknown field "portz" '
            'in io.k8s.api.core.v1.Container') in out, out
    assert "--validate=false" in out, out
    # Refused before anything was sent: nothing was created.
    assert "NotFound" in kubectl("get", "cm", "settings", check=False)


def test_apply_list_with_wrong_type_is_refused_client_side(kubectl, tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = list_yaml().replace("replicas: 1", "replicas: one")
    out = kubectl("apply", "-f", write(tmp_path, "bad.yaml", bad), check=False)
    assert "ValidationError(Deployment.spec.replicas)" in out, out
    assert "NotFound" in kubectl("get", "deploy", "web", check=False)


@pytest.mark.parametrize("accept, ctype", [
    # kubectl's spelling, answered with the one Go's mime package can parse.
    ("application/com.github.proto-openapi.spec.v2@v1.0+protobuf", openapi_v2.PROTOBUF),
    (openapi_v2.PROTOBUF, openapi_v2.PROTOBUF),
    ("application/json", "application/json"),
])
def test_served_with_etag(api_server: ApiServer, accept: str, ctype: str) -> None:
    http = api_server.session()
    r = http.get(f"{api_server.url}/openapi/v2", headers={"Accept": accept}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == ctype
    etag = r.headers["ETag"]
    assert etag == '"' + hashlib.sha512(r.content).hexdigest().upper() + '"'
    again = http.get(f"{api_server.url}/openapi/v2",
                     headers={"Accept": accept, "If-None-Match": etag}, timeout=30)
    assert again.status_code == 304 and again.content == b""
    if ctype == "application/json":
        doc = r.json()
        assert doc["swagger"] == "2.0"
        assert "io.k8s.api.apps.v1.Deployment" in doc["definitions"]


def test_refuses_other_media_types_and_anonymous(api_server: ApiServer) -> None:
    http = api_server.session()
    r = http.get(f"{api_server.url}/openapi/v2", headers={"Accept": "text/html"}, timeout=30)
    assert r.status_code == 406
    assert r.json()["reason"] == "NotAcceptable"
    r = http.get(f"{api_server.url}/openapi/v2", headers={"Authorization": "Bearer nope"},
                 timeout=30)
    assert r.status_code == 401


def test_explain_from_openapi_v2(kubectl) -> None:  # type: ignore[no-untyped-def]
    """`explain --output=plaintext-openapiv2` walks the v2 models (refs, arrays of refs)."""
    out = kubectl("explain", "deployment.spec.replicas", "--output=plaintext-openapiv2")
    assert "KIND:     Deployment" in out and "VERSION:  apps/v1" in out, out
    assert "FIELD:    replicas <integer>" in out and "Number of desired pods" in out, out
    out = kubectl("explain", "pods.spec.containers.ports", "--output=plaintext-openapiv2")
    assert "RESOURCE: ports <[]Object>" in out, out
    assert "containerPort\t<integer> -required-" in out, out
    assert "protocol\t<string>" in out, out


def test_create_and_server_side_apply_of_a_list(kubectl, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Every verb that validates a List client-side: create, and apply --server-side."""
    path = write(tmp_path, "list.yaml", list_yaml())
    out = kubectl("create", "-f", path)
    assert "configmap/settings created" in out and "service/web created" in out, out
    path = write(tmp_path, "list.yaml", list_yaml(mode="c"))
    out = kubectl("apply", "--server-side", "--force-conflicts", "-f", path)
    assert "configmap/settings serverside-applied" in out, out
    assert kubectl("get", "cm", "settings", "-o", "jsonpath={.data.mode}") == "c"
