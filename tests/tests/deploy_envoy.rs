// Test code: a failed unwrap or an indexing panic is a failed test, with its message.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

//! The plain-Envoy and docker compose deployments, and the README that walks through them:
//! - `envoy-config/production.yaml` and `envoy-config/compose-envoy.yaml` embed exactly
//!   `policies/examples/demo.json` with explicit enforcer settings naming a cluster they define
//!   (that both pass `envoy --mode validate` is `deploy.rs`'s generic check);
//! - `envoy-config/docker-compose.yaml` passes `docker-compose config`, and that check refuses a
//!   broken file; what it mounts and builds exists where the Envoy config expects it;
//! - the TEST ONLY client certificate carries a SPIFFE ID the demo policy maps to an agent;
//! - every deployment snippet in README.md is an excerpt of the file it names, so the README
//!   cannot drift from what ships.
//!
//! Run alone: `cargo test -p interlock-tests --test deploy_envoy` (after `make deps`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use interlock_tests::{demo_policy, embedded_plugin_config, repo_root};
use serde_json::{Value, json};

fn read(path: &str) -> String {
    fs::read_to_string(repo_root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn demo_policy_value() -> Value {
    let mut policy: Value =
        serde_json::from_str(&fs::read_to_string(demo_policy()).unwrap()).unwrap();
    policy.as_object_mut().unwrap().remove("$schema");
    policy
}

#[test]
fn deployment_envoy_configs_embed_the_demo_policy_and_reach_their_enforcer_cluster() {
    for (file, enforcer) in [
        (
            "envoy-config/production.yaml",
            json!({"cluster": "interlock_enforcer", "authority": "interlock-enforcer",
                   "flush_interval_ms": 200, "max_buffered_events": 10000,
                   "max_buffered_bytes": 4194304, "max_batch": 500,
                   "timeout_ms": 2000}),
        ),
        (
            "envoy-config/compose-envoy.yaml",
            json!({"cluster": "interlock_enforcer", "authority": "interlock-enforcer"}),
        ),
    ] {
        let yaml = read(file);
        let config = embedded_plugin_config(&yaml).unwrap_or_else(|e| panic!("{file}: {e:#}"));
        assert!(
            config["policy"] == demo_policy_value(),
            "{file}: the embedded policy differs from policies/examples/demo.json: run `make \
             envoy-config`"
        );
        assert_eq!(config["enforcer"], enforcer, "{file}");
        let cluster = enforcer["cluster"].as_str().unwrap();
        assert!(
            yaml.contains(&format!("  - name: {cluster}\n")),
            "{file}: no cluster `{cluster}` for the filter's dispatch_http_call"
        );
        // Both hold headers until the body is decided; plain Envoy can.
        assert!(config.get("hold_headers").is_none(), "{file}");
        assert!(
            yaml.contains("allow_on_headers_stop_iteration: true"),
            "{file}"
        );
        assert!(yaml.contains("failure_policy: FAIL_CLOSED"), "{file}");
        assert!(
            yaml.contains("path_with_escaped_slashes_action: REJECT_REQUEST"),
            "{file}"
        );
        assert!(
            yaml.contains("%FILTER_STATE(wasm.interlock.decision:PLAIN)%"),
            "{file}: the access log must print the decision"
        );
        assert!(
            yaml.contains("filename: /etc/interlock/interlock_filter.wasm"),
            "{file}: the filter path deploy.rs maps onto the checkout"
        );
    }
    let production = read("envoy-config/production.yaml");
    for must in [
        "require_client_certificate: true",
        "remote_jwks:",
        "async_fetch: {}",
        "payload_in_metadata: jwt_payload",
        "overload_manager:",
        "forward_client_cert_details: SANITIZE",
    ] {
        assert!(production.contains(must), "production.yaml lacks `{must}`");
    }
}

#[test]
fn the_test_client_certificate_is_an_agent_of_the_demo_policy() {
    // The client certificate's URI SAN, as written in the openssl config that made it.
    let cnf = read("envoy-config/certs/openssl.cnf");
    let san = cnf
        .lines()
        .find_map(|l| l.strip_prefix("subjectAltName = URI:"))
        .expect("openssl.cnf: no URI subjectAltName");
    let policy = demo_policy_value();
    assert!(
        policy["identity"]["mtls_agents"].get(san).is_some(),
        "{san} is not in the demo policy's identity.mtls_agents"
    );
    // And the certificate really carries it (DER holds the URI as plain ASCII).
    let pem = read("envoy-config/certs/client.crt");
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(!body.is_empty());
    let der = base64_decode(&body);
    assert!(
        der.windows(san.len()).any(|w| w == san.as_bytes()),
        "client.crt does not carry {san}"
    );
    for file in ["ca.key", "server.key", "client.key"] {
        assert!(repo_root().join("envoy-config/certs").join(file).is_file());
    }
    assert!(read("envoy-config/certs/README.md").contains("TEST ONLY"));
}

/// Standard base64 (PEM bodies), without a dependency for one test.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    };
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for v in text.bytes().filter_map(value) {
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

fn docker_compose() -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join("docker-compose"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "docker-compose is not installed: run `make deps` (it installs the Debian \
                 package docker-compose, whose `config` validates the compose file without docker)"
            )
        })
}

fn compose_config(file: &Path) -> Output {
    Command::new(docker_compose())
        .arg("-f")
        .arg(file)
        .arg("config")
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn the_compose_file_passes_docker_compose_config() {
    let file = repo_root().join("envoy-config/docker-compose.yaml");
    let out = compose_config(&file);
    assert!(
        out.status.success(),
        "docker-compose config {}:\n{}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = read("envoy-config/docker-compose.yaml");
    // What it mounts and builds is what the repository has.
    assert!(text.contains(
        "../target/wasm32-wasip1/release/interlock_filter.wasm:/etc/interlock/interlock_filter.wasm:ro"
    ));
    assert!(text.contains("./compose-envoy.yaml:/etc/envoy/envoy.yaml:ro"));
    for line in text.lines() {
        if let Some(dockerfile) = line.trim().strip_prefix("dockerfile: ") {
            assert!(
                repo_root().join(dockerfile).is_file(),
                "docker-compose.yaml builds {dockerfile}, which does not exist"
            );
        }
    }
    // The enforcer gets exactly the capabilities kernel enforcement needs, never `privileged`.
    assert!(text.contains("cap_add: [BPF, NET_ADMIN, SYS_RESOURCE, SYS_NICE]"));
    assert!(!text.contains("privileged: true"));
    // The Envoy image is the release the tests validate configurations with.
    let makefile = read("Makefile");
    let version = makefile
        .lines()
        .find_map(|l| l.strip_prefix("ENVOY_VERSION"))
        .and_then(|l| l.split(":=").nth(1))
        .map(str::trim)
        .expect("ENVOY_VERSION in the Makefile");
    assert!(
        text.contains(&format!("image: envoyproxy/envoy:v{version}")),
        "the compose Envoy image is not v{version}"
    );
}

#[test]
fn docker_compose_config_refuses_a_broken_compose_file() {
    let dir = std::env::temp_dir().join(format!("interlock-compose-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let text = read("envoy-config/docker-compose.yaml");
    for (what, broken) in [
        (
            "unknown service option",
            text.replacen("    cap_drop: [ALL]\n", "    cap_dorp: [ALL]\n", 1),
        ),
        (
            "ports that are not a list",
            text.replacen(
                "    ports:\n      - \"127.0.0.1:10000:10000\"   # agents\n",
                "    ports: 10000\n",
                1,
            ),
        ),
    ] {
        assert_ne!(broken, text, "{what}: the edit did not apply");
        let file = dir.join("docker-compose.yaml");
        fs::write(&file, broken).unwrap();
        let out = compose_config(&file);
        assert!(
            !out.status.success(),
            "docker-compose config accepted: {what}"
        );
    }
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn the_wasm_image_has_the_layout_istio_pulls() {
    let dockerfile = read("docker/wasm-plugin.Dockerfile");
    let instructions: Vec<&str> = dockerfile
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(instructions, ["FROM scratch", "COPY plugin.wasm ./"]);
    // The script that builds it stages the module under that name.
    let script = read("scripts/istio-images.sh");
    assert!(
        script
            .contains("target/wasm32-wasip1/release/interlock_filter.wasm target/oci/plugin.wasm")
    );
    assert!(script.contains("-f docker/wasm-plugin.Dockerfile"));
}

/// A README snippet: the file it names and its lines.
struct Excerpt {
    file: String,
    lines: Vec<String>,
}

/// Every fenced block in README.md preceded by `<!-- excerpt: PATH -->`.
fn readme_excerpts() -> Vec<Excerpt> {
    let readme = read("README.md");
    let lines: Vec<&str> = readme.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if let Some(file) = lines[i]
            .trim()
            .strip_prefix("<!-- excerpt: ")
            .and_then(|r| r.strip_suffix(" -->"))
        {
            let open = i + 1;
            assert!(
                lines.get(open).is_some_and(|l| l.starts_with("```")),
                "README.md line {}: an excerpt marker must be followed by a fenced block",
                i + 1
            );
            let close = (open + 1..lines.len())
                .find(|&j| lines[j].starts_with("```"))
                .unwrap_or_else(|| panic!("README.md line {}: unclosed block", open + 1));
            out.push(Excerpt {
                file: file.to_owned(),
                lines: lines[open + 1..close]
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect(),
            });
            i = close;
        }
        i += 1;
    }
    out
}

#[test]
fn readme_deployment_snippets_are_excerpts_of_the_files_that_ship() {
    let excerpts = readme_excerpts();
    // The walk-through shows at least the Istio plugin, the enforcer privileges, the compose
    // enforcer and the production filter settings.
    for file in [
        "istio/base/wasmplugin.yaml",
        "istio/base/enforcer-daemonset.yaml",
        "envoy-config/docker-compose.yaml",
        "envoy-config/production.yaml",
    ] {
        assert!(
            excerpts.iter().any(|e| e.file == file),
            "README.md shows no excerpt of {file}"
        );
    }
    for e in &excerpts {
        assert!(!e.lines.is_empty(), "empty excerpt of {}", e.file);
        let shipped = read(&e.file);
        let shipped: Vec<&str> = shipped.lines().collect();
        // Contiguous lines of the file, with the same text (a `# …` line in the README stands
        // for lines left out, so it may skip ahead).
        let mut at = None;
        let mut pos = 0;
        for line in &e.lines {
            if line.trim() == "# …" {
                at = None;
                continue;
            }
            let found = match at {
                Some(next) if shipped.get(next) == Some(&line.as_str()) => Some(next),
                Some(_) => None,
                None => (pos..shipped.len()).find(|&j| shipped[j] == line),
            };
            let Some(j) = found else {
                panic!(
                    "README.md's excerpt of {} has a line that is not in the file (in that \
                     order): {line:?}",
                    e.file
                );
            };
            at = Some(j + 1);
            pos = j + 1;
        }
    }
}
