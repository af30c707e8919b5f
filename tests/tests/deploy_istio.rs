// Test code: a failed unwrap or an indexing panic is a failed test, with its message.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

//! The Istio deployment (`istio/`), checked without a cluster:
//! - every manifest against its kind's `openAPIV3Schema` in Istio's CRDs
//!   (`../shared/schemas/istio-crds.yaml`) or, for Kubernetes kinds, a hand-written schema, with
//!   the API server's strictness (`scripts/validate-k8s.py`), and the check refuses broken ones;
//! - the `pluginConfig` of the WasmPlugin and the TrafficExtension: the demo policy with Istio's
//!   JWT metadata key, `interlock check` accepts it, the real filter inside `envoy --mode
//!   validate` accepts the whole configuration, and its enforcer cluster is the one Istio
//!   generates for the Service we ship;
//! - the overlay that pins the images by digest, and (where `kubectl` is installed) what
//!   `kubectl kustomize` renders for each variant.
//!
//! Run alone: `cargo test -p interlock-tests --test deploy_istio` (after `make deps build`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use interlock_tests::{
    Ports, StackOptions, demo_policy, filter_wasm, interlock_bin, render_envoy_config, repo_root,
    require_artifact, validate_envoy_config,
};
use serde_json::{Value, json};

/// The project venv's Python, where `make deps` installs scripts/deploy-requirements.txt.
fn python() -> PathBuf {
    let py = repo_root().join(".venv/bin/python");
    assert!(
        py.is_file(),
        "{} is missing: run `make deps` (it creates .venv and installs the deployment checks)",
        py.display()
    );
    py
}

/// Istio's CRD schemas, beside the repository as CI checks it out.
fn istio_crds() -> PathBuf {
    let path = repo_root().join("../shared/schemas/istio-crds.yaml");
    assert!(
        path.is_file(),
        "Istio's CRD schemas are not at {}: CI checks the repository out with `shared/` beside \
         it (../shared/schemas/istio-crds.yaml); the Istio manifests cannot be validated without them",
        path.display()
    );
    path
}

fn validate(paths: &[&Path], dump: bool) -> Output {
    let mut cmd = Command::new(python());
    cmd.arg(repo_root().join("scripts/validate-k8s.py"))
        .arg("--crds")
        .arg(istio_crds());
    if dump {
        cmd.arg("--dump");
    }
    cmd.args(paths)
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every document under istio/, as the validator read it (after checking that it is valid).
fn istio_documents() -> Vec<Value> {
    let out = validate(&[&repo_root().join("istio")], true);
    assert_eq!(
        out.status.code(),
        Some(0),
        "istio/ does not validate:\n{}",
        stderr(&out)
    );
    let dump: Value = serde_json::from_slice(&out.stdout).unwrap();
    dump["documents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["patch"] == json!(false))
        .map(|d| d["document"].clone())
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "expected exactly one {kind} under istio/");
    found[0]
}

/// A private scratch directory under target/ (kustomize refuses absolute paths and overlays
/// inside their base, so overlays under test live in the repository's target/).
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = repo_root().join("target/deploy-tests").join(format!(
            "{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

#[test]
fn every_istio_manifest_matches_its_schema() {
    let out = validate(&[&repo_root().join("istio")], false);
    assert_eq!(
        out.status.code(),
        Some(0),
        "scripts/validate-k8s.py istio/ failed:\n{}",
        stderr(&out)
    );
    // All the kinds the deployment needs are there and were checked.
    let docs = istio_documents();
    for kind in [
        "Namespace",
        "ServiceAccount",
        "DaemonSet",
        "Service",
        "DestinationRule",
        "RequestAuthentication",
        "WasmPlugin",
        "TrafficExtension",
    ] {
        assert!(
            docs.iter().any(|d| d["kind"] == kind),
            "no {kind} under istio/"
        );
    }
}

/// One broken manifest: which shipped document to start from, how to break it, and what the
/// validator's complaint must contain (the JSON path, a word of the reason).
struct Broken {
    name: &'static str,
    kind: &'static str,
    edit: fn(&mut Value),
    says: &'static [&'static str],
}

const BROKEN: &[Broken] = &[
    Broken {
        name: "failStrategy outside the enum",
        kind: "WasmPlugin",
        edit: |d| d["spec"]["failStrategy"] = json!("FAIL_SOMETIMES"),
        says: &["$.spec.failStrategy", "FAIL_SOMETIMES"],
    },
    Broken {
        name: "unknown field in a WasmPlugin spec",
        kind: "WasmPlugin",
        edit: |d| d["spec"]["priorty"] = json!(10),
        says: &["$.spec", "priorty"],
    },
    Broken {
        name: "phase outside the enum",
        kind: "WasmPlugin",
        edit: |d| d["spec"]["phase"] = json!("AUTHORIZATION"),
        says: &["$.spec.phase"],
    },
    Broken {
        name: "sha256 that is not 64 hex digits",
        kind: "WasmPlugin",
        edit: |d| d["spec"]["sha256"] = json!("sha256:abc"),
        says: &["$.spec.sha256"],
    },
    Broken {
        name: "url scheme Istio cannot fetch (CEL rule)",
        kind: "WasmPlugin",
        edit: |d| d["spec"]["url"] = json!("ftp://example.com/plugin.wasm"),
        says: &["$.spec.url", "url must have schema"],
    },
    Broken {
        name: "selector and targetRefs together (CEL rule)",
        kind: "WasmPlugin",
        edit: |d| d["spec"]["targetRefs"] = json!([{"kind": "Service", "name": "mcp"}]),
        says: &["$.spec", "only one of"],
    },
    Broken {
        name: "TrafficExtension with both wasm and lua (oneOf and CEL rule)",
        kind: "TrafficExtension",
        edit: |d| d["spec"]["lua"] = json!({"inlineCode": "function envoy_on_request(h) end"}),
        says: &["$.spec", "exactly one of wasm or lua"],
    },
    Broken {
        name: "RequestAuthentication with jwks and jwksUri (CEL rule)",
        kind: "RequestAuthentication",
        edit: |d| d["spec"]["jwtRules"][0]["jwks"] = json!("{\"keys\":[]}"),
        says: &["$.spec.jwtRules[0]"],
    },
    Broken {
        name: "DestinationRule connect timeout below 1ms (CEL rule)",
        kind: "DestinationRule",
        edit: |d| {
            d["spec"]["trafficPolicy"]["connectionPool"]["tcp"]["connectTimeout"] = json!("0s")
        },
        says: &["connectTimeout", "duration"],
    },
    Broken {
        name: "DestinationRule TLS mode outside the enum",
        kind: "DestinationRule",
        edit: |d| d["spec"]["trafficPolicy"]["tls"]["mode"] = json!("OFF"),
        says: &["$.spec.trafficPolicy.tls.mode"],
    },
    Broken {
        name: "capability spelled with CAP_ (Kubernetes drops the prefix)",
        kind: "DaemonSet",
        edit: |d| {
            d["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilities"]["add"]
                [0] = json!("CAP_BPF");
        },
        says: &["capabilities.add[0]", "CAP_BPF"],
    },
    Broken {
        name: "unknown field in a container",
        kind: "DaemonSet",
        edit: |d| d["spec"]["template"]["spec"]["containers"][0]["priviledged"] = json!(true),
        says: &["containers[0]", "priviledged"],
    },
    Broken {
        name: "pod template labels that do not match the selector",
        kind: "DaemonSet",
        edit: |d| {
            d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] = json!("other");
        },
        says: &["$.spec.selector.matchLabels"],
    },
    Broken {
        name: "Bidirectional mount propagation without privileged",
        kind: "DaemonSet",
        edit: |d| {
            d["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0]["mountPropagation"] =
                json!("Bidirectional");
        },
        says: &["volumeMounts[0]", "privileged"],
    },
    Broken {
        name: "Service port out of range",
        kind: "Service",
        edit: |d| d["spec"]["ports"][0]["port"] = json!(70000),
        says: &["$.spec.ports[0].port"],
    },
    Broken {
        name: "no metadata.name",
        kind: "Namespace",
        edit: |d| {
            d["metadata"].as_object_mut().unwrap().remove("name");
        },
        says: &["$.metadata", "name"],
    },
];

#[test]
fn the_schema_check_refuses_broken_manifests() {
    let docs = istio_documents();
    let dir = Scratch::new("broken");
    let mut problems = Vec::new();
    for (i, b) in BROKEN.iter().enumerate() {
        let mut doc = find(&docs, b.kind).clone();
        (b.edit)(&mut doc);
        // JSON is YAML: the validator reads it like any manifest.
        let file = dir.0.join(format!("broken-{i}.yaml"));
        fs::write(&file, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
        let out = validate(&[&file], false);
        let err = stderr(&out);
        if out.status.code() != Some(1) {
            problems.push(format!(
                "{}: exit status {} (expected 1): {err}",
                b.name, out.status
            ));
        } else if let Some(missing) = b.says.iter().find(|s| !err.contains(**s)) {
            problems.push(format!(
                "{}: the complaint does not mention {missing:?}: {err}",
                b.name
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "broken manifests the check let through or misreported:\n{}",
        problems.join("\n")
    );
}

#[test]
fn a_file_no_kustomization_applies_is_refused() {
    let dir = Scratch::new("orphan");
    let base = dir.0.join("base");
    fs::create_dir_all(&base).unwrap();
    fs::copy(
        repo_root().join("istio/base/namespace.yaml"),
        base.join("namespace.yaml"),
    )
    .unwrap();
    fs::copy(
        repo_root().join("istio/base/enforcer-service.yaml"),
        base.join("enforcer-service.yaml"),
    )
    .unwrap();
    fs::write(
        base.join("kustomization.yaml"),
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- namespace.yaml\n",
    )
    .unwrap();
    let out = validate(&[&dir.0], false);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("enforcer-service.yaml: not named by any kustomization.yaml"),
        "{}",
        stderr(&out)
    );
}

/// The demo policy as Istio must carry it: Istio's jwt_authn writes verified payloads under the
/// key `payload` (Istio >= 1.21, istio/istio#47407), not the demo's `jwt_payload`.
fn demo_policy_for_istio() -> Value {
    let mut policy: Value =
        serde_json::from_str(&fs::read_to_string(demo_policy()).unwrap()).unwrap();
    policy.as_object_mut().unwrap().remove("$schema");
    policy["identity"]["jwt"]["payload_key"] = json!("payload");
    policy
}

/// The pluginConfig of the WasmPlugin and of the TrafficExtension.
fn plugin_configs(docs: &[Value]) -> Vec<(&'static str, Value)> {
    vec![
        (
            "WasmPlugin",
            find(docs, "WasmPlugin")["spec"]["pluginConfig"].clone(),
        ),
        (
            "TrafficExtension",
            find(docs, "TrafficExtension")["spec"]["wasm"]["pluginConfig"].clone(),
        ),
    ]
}

#[test]
fn plugin_config_carries_the_demo_policy_and_names_the_enforcer_cluster_istio_generates() {
    let docs = istio_documents();
    let service = find(&docs, "Service");
    let host = format!(
        "{}.{}.svc.cluster.local",
        service["metadata"]["name"].as_str().unwrap(),
        service["metadata"]["namespace"].as_str().unwrap()
    );
    let port = service["spec"]["ports"][0]["port"].as_u64().unwrap();
    // Istio's outbound cluster for a Service port: `outbound|<port>|<subset>|<host>`.
    let cluster = format!("outbound|{port}||{host}");
    assert_eq!(service["spec"]["internalTrafficPolicy"], "Local");
    assert_eq!(
        find(&docs, "DestinationRule")["spec"]["host"],
        host.as_str()
    );

    for (kind, config) in plugin_configs(&docs) {
        assert!(
            config["policy"] == demo_policy_for_istio(),
            "{kind}: the embedded policy is not policies/examples/demo.json with Istio's \
             payload_key; run `make istio-config`.\n{}",
            serde_json::to_string_pretty(&config["policy"]).unwrap()
        );
        assert_eq!(config["enforcer"]["cluster"], cluster.as_str(), "{kind}");
        assert_eq!(config["enforcer"]["authority"], host.as_str(), "{kind}");
        assert_eq!(
            config["hold_headers"],
            json!(false),
            "{kind}: Istio cannot set allow_on_headers_stop_iteration"
        );
    }

    let wasm = &find(&docs, "WasmPlugin")["spec"];
    let ext = &find(&docs, "TrafficExtension")["spec"];
    for (kind, spec, module) in [
        ("WasmPlugin", wasm, wasm),
        ("TrafficExtension", ext, &ext["wasm"]),
    ] {
        assert_eq!(spec["phase"], "AUTHZ", "{kind}");
        assert_eq!(module["failStrategy"], "FAIL_CLOSE", "{kind}");
        assert_eq!(spec["match"], json!([{"mode": "SERVER"}]), "{kind}");
        let url = module["url"].as_str().unwrap();
        let digest = url
            .strip_prefix("oci://")
            .and_then(|u| u.split_once("@sha256:"))
            .map(|(_, d)| d)
            .unwrap_or_else(|| panic!("{kind}: url is not oci://…@sha256:…: {url}"));
        assert_eq!(
            module["sha256"], digest,
            "{kind}: sha256 and the url's digest differ"
        );
    }
    // The filter and token verification select the same workloads.
    let selector = &find(&docs, "RequestAuthentication")["spec"]["selector"];
    assert_eq!(&wasm["selector"], selector);
    assert_eq!(&ext["selector"], selector);
    // Identity never from headers a client could also send.
    for rule in find(&docs, "RequestAuthentication")["spec"]["jwtRules"]
        .as_array()
        .unwrap()
    {
        assert!(rule.get("outputClaimToHeaders").is_none(), "{rule}");
        assert!(rule.get("outputPayloadToHeader").is_none(), "{rule}");
    }
}

#[test]
fn interlock_check_accepts_the_policy_inside_plugin_config() {
    require_artifact(&interlock_bin(), "the enforcer (interlock)");
    let docs = istio_documents();
    let dir = Scratch::new("check");
    for (kind, config) in plugin_configs(&docs) {
        let file = dir.0.join(format!("{kind}.json"));
        fs::write(
            &file,
            serde_json::to_string_pretty(&config["policy"]).unwrap(),
        )
        .unwrap();
        let out = Command::new(interlock_bin())
            .arg("check")
            .arg(&file)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "interlock check refuses the {kind} policy: {}",
            stderr(&out)
        );
    }
}

#[test]
fn the_filter_in_envoy_accepts_the_istio_plugin_config() {
    require_artifact(&filter_wasm(), "the filter (interlock_filter.wasm)");
    let docs = istio_documents();
    let dir = Scratch::new("filter");
    for (kind, config) in plugin_configs(&docs) {
        // The demo bootstrap with the Istio pluginConfig as the filter's configuration: the
        // filter's on_configure runs inside `envoy --mode validate` and refuses what it cannot use.
        let opts = StackOptions::default().plugin_config(config);
        let yaml = render_envoy_config(&opts, &Ports::pick()).unwrap();
        let path = dir.0.join(format!("{kind}.yaml"));
        fs::write(&path, yaml).unwrap();
        if let Err(e) = validate_envoy_config(&path) {
            panic!("{kind}: the filter refuses the Istio pluginConfig:\n{e}");
        }
    }
}

fn write_overlay(dir: &Path, flags: &[&str]) -> Output {
    let filter = format!(
        "registry.example.com/acme/interlock-filter@sha256:{}",
        "ab".repeat(32)
    );
    let enforcer = format!(
        "registry.example.com/acme/interlock-enforcer@sha256:{}",
        "cd".repeat(32)
    );
    Command::new(python())
        .arg(repo_root().join("scripts/istio-overlay.py"))
        .args(flags)
        .args(["--filter", &filter, "--enforcer", &enforcer])
        .arg(dir)
        .current_dir(repo_root())
        .output()
        .unwrap()
}

fn kubectl() -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("kubectl"))
            .find(|p| p.is_file())
    })
}

#[test]
fn the_release_overlay_pins_both_images_by_digest_in_every_variant() {
    let scratch = Scratch::new("overlay");
    for (name, flags) in [
        ("wasmplugin", &[][..]),
        (
            "trafficextension",
            &["--traffic-extension", "--demo-issuer"][..],
        ),
    ] {
        let dir = scratch.0.join(name);
        let out = write_overlay(&dir, flags);
        assert!(
            out.status.success(),
            "istio-overlay.py {flags:?}: {}",
            stderr(&out)
        );
        // Its kustomization is well-formed and names paths that exist.
        let check = validate(&[&dir.join("kustomization.yaml")], false);
        assert_eq!(check.status.code(), Some(0), "{name}: {}", stderr(&check));

        let Some(kubectl) = kubectl() else {
            eprintln!(
                "SKIPPED (loudly): `kubectl kustomize` of the {name} overlay; kubectl is not \
                 installed, so the rendered output was not checked"
            );
            continue;
        };
        let rendered = Command::new(&kubectl)
            .arg("kustomize")
            .arg(&dir)
            .current_dir(repo_root())
            .output()
            .unwrap();
        assert!(
            rendered.status.success(),
            "kubectl kustomize {}: {}",
            dir.display(),
            stderr(&rendered)
        );
        let file = dir.join("rendered.yaml");
        fs::write(&file, &rendered.stdout).unwrap();
        let check = validate(&[&file], false);
        assert_eq!(
            check.status.code(),
            Some(0),
            "{name}: the rendered manifests do not validate: {}",
            stderr(&check)
        );
        let text = String::from_utf8_lossy(&rendered.stdout);
        let filter_url = format!(
            "oci://registry.example.com/acme/interlock-filter@sha256:{}",
            "ab".repeat(32)
        );
        assert!(
            text.contains(&filter_url),
            "{name}: filter url not pinned:\n{text}"
        );
        assert!(
            text.contains(&format!(
                "image: registry.example.com/acme/interlock-enforcer@sha256:{}",
                "cd".repeat(32)
            )),
            "{name}: enforcer image not pinned:\n{text}"
        );
        assert!(
            !text.contains(&"0".repeat(64)),
            "{name}: a placeholder digest survived:\n{text}"
        );
        let kinds: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("kind: "))
            .collect();
        let (present, absent) = if name == "wasmplugin" {
            ("WasmPlugin", "TrafficExtension")
        } else {
            ("TrafficExtension", "WasmPlugin")
        };
        assert!(
            kinds.contains(&present),
            "{name}: no {present} in {kinds:?}"
        );
        assert!(
            !kinds.contains(&absent),
            "{name}: the filter would be inserted twice: {kinds:?}"
        );
        if flags.contains(&"--demo-issuer") {
            assert!(text.contains("issuer: interlock-demo"), "{name}:\n{text}");
        } else {
            assert!(
                !text.contains("interlock-demo"),
                "{name}: the demo issuer must be opt-in:\n{text}"
            );
        }
    }
}
