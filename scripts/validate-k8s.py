#!/usr/bin/env python3
"""Validates Kubernetes and Istio manifests the way the API server would, without a cluster.

- Istio kinds: against the `openAPIV3Schema` of the served version of their CustomResourceDefinition
  in Istio's generated CRDs (default ../shared/schemas/istio-crds.yaml, beside the repository),
  with the API server's structural-schema rules: an unknown field is an error (as with kubectl's
  default strict field validation) unless `x-kubernetes-preserve-unknown-fields` allows it,
  `nullable`, list-map keys unique, and the CEL rules (`x-kubernetes-validations`) that the
  documents reach, evaluated by a small table below. A rule missing from the table is an error
  rather than silently unchecked.
- Kubernetes core kinds (Namespace, ServiceAccount, ConfigMap, Service, DaemonSet): against
  hand-written schemas of the fields Interlock uses, strict in the same way.
- kustomize files (Kustomization, Component): their shape, that every path they name exists, and
  that every other YAML file under the checked directories is named by one of them (a file no
  kustomization applies is a mistake). Files used as patches are checked as partial documents.

usage: validate-k8s.py [--crds FILE] [--dump] PATH...
  PATH: files or directories (searched for *.yaml / *.yml).
  --dump: print every document as JSON ({"documents": [{"file", "index", "document"}]}) on
          stdout, for tests that check what the files say.
Exit status: 0 valid, 1 invalid, 2 usage or missing schemas.
"""
from __future__ import annotations

import copy
import json
import os
import re
import sys
from urllib.parse import urlparse

try:
    import jsonschema
    import yaml
except ImportError as e:  # pragma: no cover - the message is the point
    print(
        f"validate-k8s.py: {e}; install the pinned tools with `make deps` "
        "(scripts/deploy-requirements.txt into .venv)",
        file=sys.stderr,
    )
    sys.exit(2)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CRDS = os.path.join(os.path.dirname(REPO), "shared", "schemas", "istio-crds.yaml")

# --------------------------------------------------------------------------------------------
# Kubernetes core kinds, hand-written (the API server's own schemas need a cluster to fetch).
# Strict objects: every field listed, anything else is an error.


def obj(properties: dict, required: list | None = None) -> dict:
    s = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        s["required"] = required
    return s


STR = {"type": "string"}
INT = {"type": "integer"}
BOOL = {"type": "boolean"}
STR_MAP = {"type": "object", "additionalProperties": STR}
DNS_LABEL = {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63}
DNS_SUBDOMAIN = {
    "type": "string",
    "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
    "maxLength": 253,
}
INT_OR_STRING = {"anyOf": [INT, STR]}
QUANTITY = {"anyOf": [{"type": "number"}, {"type": "string", "pattern": r"^[0-9.]+(m|k|Ki|Mi|Gi|Ti|M|G|T)?$"}]}

METADATA = obj(
    {
        "name": DNS_SUBDOMAIN,
        "namespace": DNS_LABEL,
        "labels": STR_MAP,
        "annotations": STR_MAP,
    },
    ["name"],
)
TEMPLATE_METADATA = obj({"labels": STR_MAP, "annotations": STR_MAP})
LABEL_SELECTOR = obj(
    {
        "matchLabels": STR_MAP,
        "matchExpressions": {
            "type": "array",
            "items": obj(
                {"key": STR, "operator": {"enum": ["In", "NotIn", "Exists", "DoesNotExist"]}, "values": {"type": "array", "items": STR}},
                ["key", "operator"],
            ),
        },
    }
)
CAPABILITIES = {
    "type": "array",
    # Kubernetes names capabilities without the CAP_ prefix.
    "items": {"type": "string", "pattern": r"^(ALL|[A-Z_]+)$", "not": {"pattern": "^CAP_"}},
}
SECURITY_CONTEXT = obj(
    {
        "privileged": BOOL,
        "allowPrivilegeEscalation": BOOL,
        "readOnlyRootFilesystem": BOOL,
        "runAsUser": INT,
        "runAsGroup": INT,
        "runAsNonRoot": BOOL,
        "capabilities": obj({"add": CAPABILITIES, "drop": CAPABILITIES}),
        "seccompProfile": obj(
            {"type": {"enum": ["RuntimeDefault", "Unconfined", "Localhost"]}, "localhostProfile": STR},
            ["type"],
        ),
        "appArmorProfile": obj(
            {"type": {"enum": ["RuntimeDefault", "Unconfined", "Localhost"]}, "localhostProfile": STR},
            ["type"],
        ),
    }
)
PROBE_HANDLER = {
    "httpGet": obj({"path": STR, "port": INT_OR_STRING, "scheme": {"enum": ["HTTP", "HTTPS"]}}, ["port"]),
    "tcpSocket": obj({"port": INT_OR_STRING}, ["port"]),
    "exec": obj({"command": {"type": "array", "items": STR}}),
}
PROBE = obj(
    {
        **PROBE_HANDLER,
        "initialDelaySeconds": INT,
        "periodSeconds": INT,
        "timeoutSeconds": INT,
        "failureThreshold": INT,
        "successThreshold": INT,
    }
)
ENV_VAR = obj(
    {
        "name": STR,
        "value": STR,
        "valueFrom": obj(
            {
                "fieldRef": obj({"fieldPath": STR, "apiVersion": STR}, ["fieldPath"]),
                "configMapKeyRef": obj({"name": STR, "key": STR, "optional": BOOL}, ["key"]),
                "secretKeyRef": obj({"name": STR, "key": STR, "optional": BOOL}, ["key"]),
            }
        ),
    },
    ["name"],
)
CONTAINER = obj(
    {
        "name": DNS_LABEL,
        "image": STR,
        "imagePullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
        "command": {"type": "array", "items": STR},
        "args": {"type": "array", "items": STR},
        "env": {"type": "array", "items": ENV_VAR},
        "ports": {
            "type": "array",
            "items": obj(
                {
                    "name": {"type": "string", "maxLength": 15},
                    "containerPort": {"type": "integer", "minimum": 1, "maximum": 65535},
                    "hostPort": INT,
                    "protocol": {"enum": ["TCP", "UDP", "SCTP"]},
                },
                ["containerPort"],
            ),
        },
        "readinessProbe": PROBE,
        "livenessProbe": PROBE,
        "startupProbe": PROBE,
        "resources": obj(
            {
                "requests": {"type": "object", "additionalProperties": QUANTITY},
                "limits": {"type": "object", "additionalProperties": QUANTITY},
            }
        ),
        "securityContext": SECURITY_CONTEXT,
        "volumeMounts": {
            "type": "array",
            "items": obj(
                {
                    "name": STR,
                    "mountPath": STR,
                    "readOnly": BOOL,
                    "subPath": STR,
                    "mountPropagation": {"enum": ["None", "HostToContainer", "Bidirectional"]},
                },
                ["name", "mountPath"],
            ),
        },
        "workingDir": STR,
    },
    ["name", "image"],
)
HOST_PATH_TYPES = ["", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket", "CharDevice", "BlockDevice"]
VOLUME = obj(
    {
        "name": DNS_LABEL,
        "hostPath": obj({"path": STR, "type": {"enum": HOST_PATH_TYPES}}, ["path"]),
        "emptyDir": obj({"medium": STR, "sizeLimit": QUANTITY}),
        "configMap": obj({"name": STR, "optional": BOOL, "defaultMode": INT}),
        "secret": obj({"secretName": STR, "optional": BOOL, "defaultMode": INT}),
    },
    ["name"],
)
POD_SPEC = obj(
    {
        "serviceAccountName": DNS_SUBDOMAIN,
        "automountServiceAccountToken": BOOL,
        "hostPID": BOOL,
        "hostNetwork": BOOL,
        "hostIPC": BOOL,
        "dnsPolicy": {"enum": ["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"]},
        "priorityClassName": STR,
        "nodeSelector": STR_MAP,
        "tolerations": {
            "type": "array",
            "items": obj(
                {
                    "key": STR,
                    "operator": {"enum": ["Exists", "Equal"]},
                    "value": STR,
                    "effect": {"enum": ["NoSchedule", "PreferNoSchedule", "NoExecute"]},
                    "tolerationSeconds": INT,
                }
            ),
        },
        "terminationGracePeriodSeconds": INT,
        "securityContext": obj({"runAsUser": INT, "runAsGroup": INT, "runAsNonRoot": BOOL, "fsGroup": INT}),
        "initContainers": {"type": "array", "items": CONTAINER},
        "containers": {"type": "array", "items": CONTAINER, "minItems": 1},
        "volumes": {"type": "array", "items": VOLUME},
    },
    ["containers"],
)


def top(api_version: str, kind: str, extra: dict, required: list | None = None) -> dict:
    return obj(
        {"apiVersion": {"const": api_version}, "kind": {"const": kind}, "metadata": METADATA, **extra},
        ["apiVersion", "kind", "metadata", *(required or [])],
    )


CORE_SCHEMAS = {
    ("v1", "Namespace"): top("v1", "Namespace", {"spec": obj({"finalizers": {"type": "array", "items": STR}})}),
    ("v1", "ServiceAccount"): top("v1", "ServiceAccount", {"automountServiceAccountToken": BOOL}),
    ("v1", "ConfigMap"): top("v1", "ConfigMap", {"data": STR_MAP, "immutable": BOOL}),
    ("v1", "Service"): top(
        "v1",
        "Service",
        {
            "spec": obj(
                {
                    "type": {"enum": ["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"]},
                    "selector": STR_MAP,
                    "internalTrafficPolicy": {"enum": ["Cluster", "Local"]},
                    "externalTrafficPolicy": {"enum": ["Cluster", "Local"]},
                    "clusterIP": STR,
                    "ports": {
                        "type": "array",
                        "minItems": 1,
                        "items": obj(
                            {
                                "name": DNS_LABEL,
                                "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                                "targetPort": INT_OR_STRING,
                                "protocol": {"enum": ["TCP", "UDP", "SCTP"]},
                                "appProtocol": STR,
                                "nodePort": INT,
                            },
                            ["port"],
                        ),
                    },
                },
                ["ports"],
            )
        },
        ["spec"],
    ),
    ("apps/v1", "DaemonSet"): top(
        "apps/v1",
        "DaemonSet",
        {
            "spec": obj(
                {
                    "selector": LABEL_SELECTOR,
                    "updateStrategy": obj(
                        {
                            "type": {"enum": ["RollingUpdate", "OnDelete"]},
                            "rollingUpdate": obj({"maxUnavailable": INT_OR_STRING, "maxSurge": INT_OR_STRING}),
                        }
                    ),
                    "minReadySeconds": INT,
                    "revisionHistoryLimit": INT,
                    "template": obj({"metadata": TEMPLATE_METADATA, "spec": POD_SPEC}, ["spec"]),
                },
                ["selector", "template"],
            )
        },
        ["spec"],
    ),
}


def check_core_semantics(doc: dict) -> list[str]:
    """What the API server checks beyond the schema, for the core kinds we ship."""
    errors = []
    kind = doc.get("kind")
    if kind == "DaemonSet":
        spec = doc.get("spec", {})
        selector = spec.get("selector", {}).get("matchLabels", {})
        labels = spec.get("template", {}).get("metadata", {}).get("labels", {})
        for k, v in selector.items():
            if labels.get(k) != v:
                errors.append(f"$.spec.selector.matchLabels.{k}: the pod template's labels do not match the selector")
        pod = spec.get("template", {}).get("spec", {})
        volumes = {v.get("name") for v in pod.get("volumes", [])}
        for i, c in enumerate(pod.get("containers", [])):
            ports = {p.get("name") for p in c.get("ports", [])}
            for j, m in enumerate(c.get("volumeMounts", [])):
                if m.get("name") not in volumes:
                    errors.append(f"$.spec.template.spec.containers[{i}].volumeMounts[{j}].name: no volume {m.get('name')!r}")
                if m.get("mountPropagation") == "Bidirectional" and not c.get("securityContext", {}).get("privileged"):
                    errors.append(f"$.spec.template.spec.containers[{i}].volumeMounts[{j}]: Bidirectional propagation needs a privileged container")
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                port = c.get(probe, {}).get("httpGet", {}).get("port")
                if isinstance(port, str) and port not in ports:
                    errors.append(f"$.spec.template.spec.containers[{i}].{probe}.httpGet.port: no container port named {port!r}")
    if kind == "Service":
        for i, p in enumerate(doc.get("spec", {}).get("ports", [])):
            if len(doc["spec"]["ports"]) > 1 and "name" not in p:
                errors.append(f"$.spec.ports[{i}].name: required when a Service has several ports")
    return errors


# --------------------------------------------------------------------------------------------
# kustomize


def kustomize_schema(api_version: str, kind: str) -> dict:
    target = obj(
        {"group": STR, "version": STR, "kind": STR, "name": STR, "namespace": STR, "labelSelector": STR, "annotationSelector": STR}
    )
    return obj(
        {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": obj({"name": STR}),
            "namespace": DNS_LABEL,
            "namePrefix": STR,
            "nameSuffix": STR,
            "resources": {"type": "array", "items": STR},
            "components": {"type": "array", "items": STR},
            "patches": {
                "type": "array",
                "items": obj(
                    {"path": STR, "patch": STR, "target": target, "options": {"type": "object"}},
                ),
            },
            "images": {
                "type": "array",
                "items": obj({"name": STR, "newName": STR, "newTag": STR, "digest": {"type": "string", "pattern": r"^sha256:[a-f0-9]{64}$"}}, ["name"]),
            },
            "labels": {"type": "array", "items": obj({"pairs": STR_MAP, "includeSelectors": BOOL, "includeTemplates": BOOL}, ["pairs"])},
            "commonAnnotations": STR_MAP,
        },
        ["apiVersion", "kind"],
    )


KUSTOMIZE_SCHEMAS = {
    ("kustomize.config.k8s.io/v1beta1", "Kustomization"): kustomize_schema("kustomize.config.k8s.io/v1beta1", "Kustomization"),
    ("kustomize.config.k8s.io/v1alpha1", "Component"): kustomize_schema("kustomize.config.k8s.io/v1alpha1", "Component"),
}


# --------------------------------------------------------------------------------------------
# CRD schemas -> JSON Schema with the API server's structural semantics.


def structural(schema: dict, closed: bool = True) -> dict:
    """Copies a CRD schema node into JSON Schema: `nullable`, and unknown fields refused where the
    API server would prune them (strict field validation reports them). Inside oneOf/anyOf/allOf/
    not, schemas only constrain values that the structural part already declares, so they stay
    open."""
    s = copy.copy(schema)
    if s.get("nullable") and "type" in s:
        s["type"] = [s["type"], "null"]
    if s.get("type") == "object" or "properties" in s:
        if closed and not s.get("x-kubernetes-preserve-unknown-fields") and "additionalProperties" not in s:
            s["additionalProperties"] = False
    if "properties" in s:
        s["properties"] = {k: structural(v, closed) for k, v in s["properties"].items()}
    if isinstance(s.get("additionalProperties"), dict):
        s["additionalProperties"] = structural(s["additionalProperties"], closed)
    if isinstance(s.get("items"), dict):
        s["items"] = structural(s["items"], closed)
    for key in ("oneOf", "anyOf", "allOf"):
        if key in s:
            s[key] = [structural(b, False) for b in s[key]]
    if "not" in s:
        s["not"] = structural(s["not"], False)
    return s


def load_crds(path: str) -> dict:
    schemas = {}
    with open(path, encoding="utf-8") as f:
        for crd in yaml.safe_load_all(f):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            spec = crd["spec"]
            for version in spec["versions"]:
                if not version.get("served"):
                    continue
                api = f"{spec['group']}/{version['name']}"
                root = structural(version["schema"]["openAPIV3Schema"])
                root.setdefault("properties", {})
                root["properties"]["apiVersion"] = {"const": api}
                root["properties"]["kind"] = {"const": spec["names"]["kind"]}
                root["properties"]["metadata"] = METADATA
                root["required"] = sorted(set(root.get("required", [])) | {"apiVersion", "kind", "metadata"})
                schemas[(api, spec["names"]["kind"])] = (root, version["schema"]["openAPIV3Schema"])
    return schemas


# --------------------------------------------------------------------------------------------
# CEL rules (x-kubernetes-validations). Each rule the checked documents reach must be here, keyed
# by its exact text; the function gets `self` and returns whether the rule holds.


def _is_url(value: str) -> bool:
    try:
        u = urlparse(value)
    except ValueError:
        return False
    return bool(u.scheme) and bool(u.netloc or u.path)


def _duration_seconds(value: str) -> float | None:
    """A Go/CEL duration ("1s", "1m30s", "250ms"); None when malformed."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)", value)
    if not parts or "".join(n + u for n, u in parts) != value:
        return None
    return sum(float(n) * units[u] for n, u in parts)


def _url_scheme_in(allowed: list[str]):
    # isURL(self) ? url(self).getScheme() in [...] : isURL("http://" + self) && url(...) in [...]
    def check(value: str) -> bool:
        if _is_url(value):
            return urlparse(value).scheme in allowed
        return _is_url("http://" + value)

    return check


def _has(obj_: dict, key: str) -> bool:
    return isinstance(obj_, dict) and key in obj_


CEL_RULES = {
    '!self.contains("*")': lambda s: "*" not in s,
    'self.all(key, !key.contains("*"))': lambda s: all("*" not in k for k in s),
    "self.all(key, key.size() != 0)": lambda s: all(len(k) != 0 for k in s),
    "self.size() == 0": lambda s: len(s) == 0,
    "(has(self.selector) ? 1 : 0) + (has(self.targetRef) ? 1 : 0) + (has(self.targetRefs) ? 1 : 0) <= 1":
        lambda s: _has(s, "selector") + _has(s, "targetRef") + _has(s, "targetRefs") <= 1,
    "(has(self.selector) ? 1 : 0) + (has(self.targetRefs) ? 1 : 0) <= 1":
        lambda s: _has(s, "selector") + _has(s, "targetRefs") <= 1,
    "has(self.wasm) != has(self.lua)": lambda s: _has(s, "wasm") != _has(s, "lua"),
    'isURL(self) ? (url(self).getScheme() in ["", "http", "https", "file", "oci"]) : (isURL("http://" + self) &&\nurl("http://" + self).getScheme() in ["", "http", "https", "file", "oci"])':
        _url_scheme_in(["", "http", "https", "file", "oci"]),
    'isURL(self) ? (url(self).getScheme() in ["", "http", "https", "oci", "file"]) : (isURL("http://" + self) &&\nurl("http://" + self).getScheme() in ["", "http", "https", "oci", "file"])':
        _url_scheme_in(["", "http", "https", "oci", "file"]),
    '(has(self.valueFrom) ? self.valueFrom : "") != "HOST" || !has(self.value)':
        lambda s: s.get("valueFrom", "") != "HOST" or "value" not in s,
    "(has(self.jwksUri) ? 1 : 0) + (has(self.jwks_uri) ? 1 : 0) + (has(self.jwks) ? 1 : 0) <= 1":
        lambda s: _has(s, "jwksUri") + _has(s, "jwks_uri") + _has(s, "jwks") <= 1,
    'url(self).getScheme() in ["http", "https"]': lambda s: _is_url(s) and urlparse(s).scheme in ("http", "https"),
    "duration(self) >= duration('1ms')": lambda s: (d := _duration_seconds(s)) is not None and d >= 1e-3,
}


def walk(schema: dict, value, path: str, errors: list[str]) -> None:
    """Evaluates the CEL rules and list-map uniqueness along the structural schema."""
    if not isinstance(schema, dict):
        return
    for rule in schema.get("x-kubernetes-validations", []):
        text = rule.get("rule", "")
        check = CEL_RULES.get(text)
        if check is None:
            errors.append(f"{path}: CEL rule not evaluated by scripts/validate-k8s.py, add it to CEL_RULES: {text!r}")
        elif not check(value):
            errors.append(f"{path}: {rule.get('message', 'CEL rule failed')} ({text})")
    if isinstance(value, dict):
        for k, v in value.items():
            sub = schema.get("properties", {}).get(k)
            if sub is None and isinstance(schema.get("additionalProperties"), dict):
                sub = schema["additionalProperties"]
            if sub is not None:
                walk(sub, v, f"{path}.{k}", errors)
    elif isinstance(value, list):
        items = schema.get("items", {})
        list_type = schema.get("x-kubernetes-list-type")
        if list_type == "map":
            keys = schema.get("x-kubernetes-list-map-keys", [])
            seen = set()
            for i, v in enumerate(value):
                key = tuple(json.dumps(v.get(k), sort_keys=True) for k in keys) if isinstance(v, dict) else None
                if key in seen:
                    errors.append(f"{path}[{i}]: duplicate entry for list-map keys {keys}")
                seen.add(key)
        elif list_type == "set":
            seen = set()
            for i, v in enumerate(value):
                key = json.dumps(v, sort_keys=True)
                if key in seen:
                    errors.append(f"{path}[{i}]: duplicate entry in a set")
                seen.add(key)
        for i, v in enumerate(value):
            walk(items, v, f"{path}[{i}]", errors)


# --------------------------------------------------------------------------------------------


def json_path(error: jsonschema.ValidationError) -> str:
    out = "$"
    for p in error.absolute_path:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


def partial(schema: dict) -> dict:
    """A schema for a strategic-merge patch: nothing is required, `$patch` is allowed."""
    if isinstance(schema, dict):
        s = {k: partial(v) for k, v in schema.items() if k != "required"}
        if "properties" in s and s.get("additionalProperties") is False:
            s["properties"] = {**s["properties"], "$patch": {"enum": ["delete", "replace", "merge"]}}
        return s
    if isinstance(schema, list):
        return [partial(v) for v in schema]
    return schema


class Checker:
    def __init__(self, crds: dict):
        self.crds = crds
        self.errors: list[str] = []
        self.documents: list[dict] = []

    def schema_for(self, doc: dict):
        key = (doc.get("apiVersion"), doc.get("kind"))
        if key in self.crds:
            return self.crds[key]
        if key in CORE_SCHEMAS:
            return CORE_SCHEMAS[key], None
        if key in KUSTOMIZE_SCHEMAS:
            return KUSTOMIZE_SCHEMAS[key], None
        return None, None

    def check_document(self, where: str, doc, is_patch: bool) -> None:
        if not isinstance(doc, dict):
            self.errors.append(f"{where}: not a mapping")
            return
        schema, raw = self.schema_for(doc)
        if schema is None:
            self.errors.append(
                f"{where}: unknown kind {doc.get('apiVersion')}/{doc.get('kind')} (no CRD in the Istio "
                "schemas and no hand-written schema in scripts/validate-k8s.py)"
            )
            return
        if is_patch:
            schema = partial(schema)
        validator = jsonschema.Draft202012Validator(schema)
        for e in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path))):
            self.errors.append(f"{where}: {json_path(e)}: {e.message}")
        if raw is not None:
            walk(raw, doc, "$", cel_errors := [])
            self.errors.extend(f"{where}: {m}" for m in cel_errors)
        elif not is_patch:
            self.errors.extend(f"{where}: {m}" for m in check_core_semantics(doc))

    def check_kustomization(self, path: str, doc: dict, referenced: set, patches: set) -> None:
        base = os.path.dirname(path)
        for field in ("resources", "components"):
            for entry in doc.get(field, []) or []:
                target = os.path.normpath(os.path.join(base, entry))
                if os.path.isdir(target):
                    if not any(os.path.exists(os.path.join(target, n)) for n in ("kustomization.yaml", "kustomization.yml", "Kustomization")):
                        self.errors.append(f"{path}: {field}: {entry}: a directory without a kustomization.yaml")
                elif os.path.isfile(target):
                    referenced.add(target)
                else:
                    self.errors.append(f"{path}: {field}: {entry}: no such file or directory")
        for i, p in enumerate(doc.get("patches", []) or []):
            if "path" in p:
                target = os.path.normpath(os.path.join(base, p["path"]))
                if not os.path.isfile(target):
                    self.errors.append(f"{path}: patches[{i}].path: {p['path']}: no such file")
                referenced.add(target)
                patches.add(target)
            elif "patch" not in p:
                self.errors.append(f"{path}: patches[{i}]: needs `path` or `patch`")


def yaml_files(paths: list[str]) -> list[str]:
    out = []
    for p in paths:
        if os.path.isdir(p):
            for root, dirs, files in os.walk(p):
                dirs.sort()
                for name in sorted(files):
                    if name.endswith((".yaml", ".yml")):
                        out.append(os.path.normpath(os.path.join(root, name)))
        else:
            out.append(os.path.normpath(p))
    return out


def main(argv: list[str]) -> int:
    crds_path = DEFAULT_CRDS
    dump = False
    paths = []
    args = iter(argv)
    for a in args:
        if a == "--crds":
            crds_path = next(args, None)
            if crds_path is None:
                print(__doc__, file=sys.stderr)
                return 2
        elif a == "--dump":
            dump = True
        elif a.startswith("-"):
            print(__doc__, file=sys.stderr)
            return 2
        else:
            paths.append(a)
    if not paths:
        print(__doc__, file=sys.stderr)
        return 2
    if not os.path.isfile(crds_path):
        print(
            f"validate-k8s.py: Istio CRD schemas not found at {crds_path}. CI checks the repository "
            "out with `shared/` beside it (../shared/schemas/istio-crds.yaml); elsewhere pass --crds FILE.",
            file=sys.stderr,
        )
        return 2
    checker = Checker(load_crds(crds_path))
    files = yaml_files(paths)
    loaded = []
    for f in files:
        try:
            with open(f, encoding="utf-8") as fh:
                docs = [d for d in yaml.safe_load_all(fh) if d is not None]
        except (OSError, yaml.YAMLError) as e:
            checker.errors.append(f"{f}: cannot read: {e}")
            continue
        loaded.append((f, docs))
    referenced: set = set()
    patch_files: set = set()
    kustomizations = set()
    for f, docs in loaded:
        for doc in docs:
            if isinstance(doc, dict) and doc.get("kind") in ("Kustomization", "Component"):
                kustomizations.add(f)
                checker.check_kustomization(f, doc, referenced, patch_files)
    dirs_checked = any(os.path.isdir(p) for p in paths)
    for f, docs in loaded:
        if dirs_checked and f not in kustomizations and os.path.abspath(f) not in {os.path.abspath(r) for r in referenced}:
            checker.errors.append(f"{f}: not named by any kustomization.yaml (resources, components or patches)")
        is_patch = os.path.abspath(f) in {os.path.abspath(p) for p in patch_files}
        for i, doc in enumerate(docs):
            where = f"{f}[{i}] {doc.get('kind') if isinstance(doc, dict) else '?'}/{(doc.get('metadata') or {}).get('name', '') if isinstance(doc, dict) else ''}"
            checker.check_document(where, doc, is_patch)
            checker.documents.append({"file": f, "index": i, "patch": is_patch, "document": doc})
    if dump:
        json.dump({"documents": checker.documents}, sys.stdout)
        sys.stdout.write("\n")
    if checker.errors:
        for e in checker.errors:
            print(e, file=sys.stderr)
        print(f"{len(checker.errors)} problem(s) in {len(files)} file(s)", file=sys.stderr)
        return 1
    print(f"ok: {len(checker.documents)} document(s) in {len(files)} file(s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
