// Test code: a failed unwrap or an indexing panic is a failed test, with its message.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

//! The files that ship, checked with the real tools: every Envoy config under `envoy-config/`
//! passes `envoy --mode validate`, the demo config embeds exactly `policies/examples/demo.json`,
//! `interlock check` accepts the demo policy and names the JSON path of what is wrong in a broken
//! one, and the filter inside Envoy refuses a broken plugin configuration, so Envoy does not
//! start with it (fail closed).
//!
//! Run alone: `cargo test -p interlock-tests --test deploy` (after `make build`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use interlock_tests::{
    Ports, StackOptions, demo_envoy_config, demo_policy, embedded_plugin_config, envoy_bin,
    filter_wasm, interlock_bin, render_envoy_config, repo_root, require_artifact,
    validate_envoy_config,
};
use serde_json::{Value, json};

/// How long Envoy may take to give up on a configuration it refuses.
const ENVOY_EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// A private temp directory for one test, removed on drop unless the test panics.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!(
            "interlock-deploy-{name}-{}-{nanos}",
            std::process::id()
        ));
        fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("deploy test: kept {}", self.0.display());
        } else {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

fn demo_policy_value() -> Value {
    let text = fs::read_to_string(demo_policy()).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn interlock_check(file: &Path) -> std::process::Output {
    require_artifact(&interlock_bin(), "the enforcer (interlock)");
    Command::new(interlock_bin())
        .arg("check")
        .arg(file)
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", interlock_bin().display()))
}

/// Where production.yaml and compose-envoy.yaml expect their files, and where this checkout has
/// them: the filter `make build` leaves, and the TEST ONLY certificates of envoy-config/certs/.
fn at_checkout_paths(config: &str) -> String {
    config
        .replace(
            "/etc/interlock/interlock_filter.wasm",
            filter_wasm().to_str().unwrap(),
        )
        .replace(
            "/etc/envoy/tls/",
            &format!("{}/", repo_root().join("envoy-config/certs").display()),
        )
}

#[test]
fn every_shipped_envoy_config_passes_envoy_validate() {
    require_artifact(&filter_wasm(), "the filter (interlock_filter.wasm)");
    let dir = repo_root().join("envoy-config");
    let mut configs: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        // The compose file is not an Envoy config (deploy_envoy.rs checks it).
        .filter(|p| p.file_name().is_none_or(|n| n != "docker-compose.yaml"))
        .collect();
    configs.sort();
    assert!(
        configs.contains(&demo_envoy_config()),
        "envoy-config/demo.yaml is not among {configs:?}"
    );
    let scratch = TempDir::new("validate-all");
    let failures: Vec<String> = configs
        .iter()
        .filter_map(|c| {
            // Deployment configs name the paths they are mounted at (the .wasm, certificates);
            // validate with those mapped onto this checkout.
            let text = at_checkout_paths(&fs::read_to_string(c).unwrap());
            let copy = scratch.path(c.file_name().unwrap().to_str().unwrap());
            fs::write(&copy, text).unwrap();
            validate_envoy_config(&copy)
                .err()
                .map(|e| format!("{}: {e}", c.display()))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} Envoy configs fail validation:\n{}",
        failures.len(),
        configs.len(),
        failures.join("\n\n")
    );
}

#[test]
fn demo_config_embeds_exactly_the_demo_policy() {
    let yaml = fs::read_to_string(demo_envoy_config()).unwrap();
    let config =
        embedded_plugin_config(&yaml).unwrap_or_else(|e| panic!("envoy-config/demo.yaml: {e:#}"));
    let embedded = config
        .get("policy")
        .unwrap_or_else(|| panic!("the demo plugin configuration has no policy: {config}"));
    let mut file = demo_policy_value();
    file.as_object_mut().unwrap().remove("$schema");
    assert!(
        embedded == &file,
        "the policy embedded in envoy-config/demo.yaml differs from policies/examples/demo.json: \
         run `make envoy-config`.\nembedded: {}\nfile: {}",
        serde_json::to_string_pretty(embedded).unwrap(),
        serde_json::to_string_pretty(&file).unwrap()
    );
}

#[test]
fn interlock_check_accepts_the_demo_policy() {
    let out = interlock_check(&demo_policy());
    assert_eq!(
        out.status.code(),
        Some(0),
        "interlock check policies/examples/demo.json: stdout {} stderr {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One broken policy: what is wrong, the file's text, the JSON path the error must name, and a
/// word of the reason.
struct Broken {
    name: &'static str,
    text: String,
    path: &'static str,
    mentions: &'static str,
}

fn broken_policies() -> Vec<Broken> {
    let demo = demo_policy_value();
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut p = demo.clone();
        f(&mut p);
        serde_json::to_string_pretty(&p).unwrap()
    };
    // Rules of the demo policy: 0 deny-delete-repository (mcp), 1 deny-admin-api (http),
    // 2 shadow-read-config.
    assert_eq!(demo["rules"][1]["id"], "deny-admin-api");
    assert_eq!(demo["rules"][2]["id"], "shadow-read-config");
    let pretty = serde_json::to_string_pretty(&demo).unwrap();
    let first_effect = "\"effect\": \"deny\"";
    assert!(pretty.contains(first_effect), "{pretty}");
    vec![
        Broken {
            name: "unknown field in a rule",
            text: edit(&|p| p["rules"][0]["priority"] = json!(1)),
            path: "$.rules[0].priority",
            mentions: "unknown field",
        },
        Broken {
            name: "unclosed parameter in a path template",
            text: edit(&|p| p["rules"][1]["http"]["paths"][0] = json!("/api/{id")),
            path: "$.rules[1].http.paths[0]",
            mentions: "{id",
        },
        Broken {
            name: "invalid effect",
            text: edit(&|p| p["rules"][0]["effect"] = json!("block")),
            path: "$.rules[0].effect",
            mentions: "block",
        },
        Broken {
            name: "duplicate rule id",
            text: edit(&|p| p["rules"][2]["id"] = json!("deny-delete-repository")),
            path: "$.rules[2].id",
            mentions: "duplicate",
        },
        Broken {
            // serde keeps the last of two equal keys; the engine must refuse the file instead.
            // The path names the object that holds the duplicate, the reason the key.
            name: "duplicate JSON key in a rule",
            text: pretty.replacen(
                first_effect,
                "\"effect\": \"allow\", \"effect\": \"deny\"",
                1,
            ),
            path: "$.rules[0]",
            mentions: "effect",
        },
        Broken {
            // Tool-definition controls only mean something on an MCP route.
            name: "tool controls on an A2A route",
            text: edit(&|p| {
                p["governed"][1]["tools"] = json!({"pin": true});
            }),
            path: "$.governed[1].tools",
            mentions: "mcp",
        },
        Broken {
            name: "unknown data class",
            text: edit(&|p| {
                p["data_rules"][0]["classes"] = json!(["secret.passwords"]);
            }),
            path: "$.data_rules[0].classes[0]",
            mentions: "not a data class",
        },
    ]
}

#[test]
fn interlock_check_refuses_broken_policies_naming_the_json_path() {
    let dir = TempDir::new("check");
    let mut problems = Vec::new();
    for (i, b) in broken_policies().iter().enumerate() {
        let file = dir.path(&format!("broken-{i}.json"));
        fs::write(&file, &b.text).unwrap();
        let out = interlock_check(&file);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.code() != Some(1) {
            problems.push(format!(
                "{}: exit status {} (expected 1); stderr: {stderr}",
                b.name, out.status
            ));
            continue;
        }
        // The path must appear as a whole path: followed by `:`, not by `.` or `[` (a deeper
        // path than expected would name another field).
        let named = stderr.contains(&format!("{}:", b.path));
        if !named || !stderr.contains(b.mentions) {
            problems.push(format!(
                "{}: stderr must name `{}` and mention {:?}; stderr: {stderr}",
                b.name, b.path, b.mentions
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "interlock check on broken policies:\n{}",
        problems.join("\n")
    );
}

/// Envoy's demo config with `plugin_config` embedded (ports rewritten so a real run cannot clash
/// with anything), written into `dir`.
fn render_with_plugin_config(dir: &TempDir, plugin_config: Value) -> PathBuf {
    let opts = StackOptions::default().plugin_config(plugin_config);
    let yaml = render_envoy_config(&opts, &Ports::pick()).unwrap();
    let path = dir.path("envoy.yaml");
    fs::write(&path, yaml).unwrap();
    path
}

fn demo_plugin_config() -> Value {
    let yaml = fs::read_to_string(demo_envoy_config()).unwrap();
    embedded_plugin_config(&yaml).unwrap()
}

/// The demo plugin configuration whose policy's first rule has an invalid effect.
fn plugin_config_with_invalid_policy() -> Value {
    let mut config = demo_plugin_config();
    config["policy"]["rules"][0]["effect"] = json!("block");
    config
}

/// What Envoy refusing `config` must say: the filter's own words and the JSON path.
fn assert_names_the_refusal(log: &str, path: &str) {
    let line = log
        .lines()
        .find(|l| l.contains("configuration refused"))
        .unwrap_or_else(|| panic!("no `configuration refused` in Envoy's output:\n{log}"));
    assert!(
        line.contains(path),
        "the refusal must name the JSON path `{path}`: {line}"
    );
}

#[test]
fn envoy_validate_fails_on_a_plugin_configuration_with_an_invalid_policy() {
    require_artifact(&filter_wasm(), "the filter (interlock_filter.wasm)");
    let dir = TempDir::new("validate");

    // The control: the same rendering with the demo's own configuration validates.
    let good = render_with_plugin_config(&dir, demo_plugin_config());
    if let Err(e) = validate_envoy_config(&good) {
        panic!("the demo plugin configuration, re-embedded, does not validate: {e}");
    }

    for (what, config, path) in [
        (
            "invalid effect",
            plugin_config_with_invalid_policy(),
            "$.rules[0].effect",
        ),
        (
            "unknown member of the plugin configuration",
            {
                let mut c = demo_plugin_config();
                c["enforcer"] = json!({"cluster": "interlock_enforcer", "retries": 3});
                c
            },
            "$.enforcer.retries",
        ),
    ] {
        let broken = render_with_plugin_config(&dir, config);
        let err = match validate_envoy_config(&broken) {
            Ok(()) => {
                panic!("{what}: `envoy --mode validate` accepted a broken plugin configuration")
            }
            Err(e) => e,
        };
        assert_names_the_refusal(&err, path);
    }
}

#[test]
fn envoy_does_not_start_with_a_plugin_configuration_it_refuses() {
    require_artifact(&filter_wasm(), "the filter (interlock_filter.wasm)");
    require_artifact(&envoy_bin(), "Envoy");
    let dir = TempDir::new("start");
    let config = render_with_plugin_config(&dir, plugin_config_with_invalid_policy());
    let log_path = dir.path("envoy.log");
    let log = fs::File::create(&log_path).unwrap();
    let mut child = Command::new(envoy_bin())
        .arg("-c")
        .arg(&config)
        .args(["--concurrency", "1", "--log-level", "info"])
        .arg("--disable-hot-restart")
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let deadline = Instant::now() + ENVOY_EXIT_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = fs::read_to_string(&log_path).unwrap_or_default();
    match status {
        None => panic!(
            "Envoy still runs {ENVOY_EXIT_TIMEOUT:?} after starting with a policy the filter \
             refuses; it must fail closed and exit. Log:\n{log}"
        ),
        Some(s) => assert!(
            !s.success(),
            "Envoy exited successfully with a refused configuration: {s}\n{log}"
        ),
    }
    assert_names_the_refusal(&log, "$.rules[0].effect");
}
