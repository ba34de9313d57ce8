//! Where the proxies run: [`Runtime::Local`] (processes on this machine, the default) or
//! [`Runtime::Docker`] (the reference and candidate as linux/amd64 images, host networking,
//! loopback only). When `docker info` does not answer, the docker runtime reports a skip.
//!
//! Containers are started and stopped through the `docker` CLI (`docker run --rm
//! --network host`, stopped with the signal the harness sends it, which the CLI forwards),
//! not through testcontainers: testcontainers 0.28 talks to the engine through bollard
//! 0.21, which speaks one fixed API version (1.53), and no fixed version works
//! everywhere — Debian's docker.io 20.10 (these machines) accepts at most 1.41, current
//! engines (29.x) at least 1.44. The CLI negotiates the version with whatever engine
//! answers. Images come from [`crate::image`] (no registry needed).

use crate::process::{Launcher, ProxyProcessBuilder};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::process::Command;

/// Image binary path used as `--entrypoint` when none is given.
pub const DEFAULT_IMAGE_BINARY: &str = "/usr/local/bin/mtproto-proxy";

/// Docker settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerImages {
    /// Reference image (e.g. a C MTProxy build).
    pub reference_image: Option<String>,
    /// Candidate image.
    pub candidate_image: String,
    /// Path of the proxy binary inside the images.
    pub binary: String,
    /// Platform (default `linux/amd64`).
    pub platform: String,
}

impl DockerImages {
    /// Images with the default binary path and platform.
    pub fn new(reference_image: Option<String>, candidate_image: impl Into<String>) -> Self {
        DockerImages {
            reference_image,
            candidate_image: candidate_image.into(),
            binary: DEFAULT_IMAGE_BINARY.into(),
            platform: "linux/amd64".into(),
        }
    }
}

/// Runtime choice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Runtime {
    /// Child processes here.
    #[default]
    Local,
    /// Containers.
    Docker(DockerImages),
}

/// Whether a runtime can be used here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Availability {
    /// Usable; the string describes it (e.g. the docker server version).
    Available(String),
    /// Not usable; the message says why (a skip, not a failure).
    Skip(String),
}

impl Runtime {
    /// `local` or `docker`.
    pub fn name(&self) -> &'static str {
        match self {
            Runtime::Local => "local",
            Runtime::Docker(_) => "docker",
        }
    }

    /// Check that the runtime answers (`docker info` within 10 s for docker).
    pub async fn check(&self) -> Availability {
        match self {
            Runtime::Local => Availability::Available("local processes".into()),
            Runtime::Docker(_) => {
                let out = tokio::time::timeout(
                    Duration::from_secs(10),
                    Command::new("docker")
                        .args(["info", "--format", "{{.ServerVersion}}"])
                        .kill_on_drop(true)
                        .output(),
                )
                .await;
                match out {
                    Ok(Ok(o)) if o.status.success() => Availability::Available(format!(
                        "docker {}",
                        String::from_utf8_lossy(&o.stdout).trim()
                    )),
                    Ok(Ok(o)) => Availability::Skip(format!(
                        "docker runtime skipped: `docker info` failed: {}",
                        String::from_utf8_lossy(&o.stderr).trim()
                    )),
                    Ok(Err(e)) => Availability::Skip(format!(
                        "docker runtime skipped: cannot run the docker CLI: {e}"
                    )),
                    Err(_) => Availability::Skip(
                        "docker runtime skipped: `docker info` did not answer within 10 s".into(),
                    ),
                }
            }
        }
    }

    /// Configure a process builder for this runtime. Under docker, `image` replaces the
    /// binary path (the binary inside the image is the entrypoint).
    pub fn apply(&self, builder: ProxyProcessBuilder, image: Option<&str>) -> ProxyProcessBuilder {
        match (self, image) {
            (Runtime::Docker(d), Some(image)) => builder.launcher(Launcher::Docker {
                image: image.to_string(),
                platform: d.platform.clone(),
            }),
            _ => builder,
        }
    }

    /// Image id (`docker image inspect`) for the report's sha256 field.
    pub async fn image_id(image: &str) -> Option<String> {
        let image = image.to_string();
        let id = tokio::task::spawn_blocking(move || crate::image::image_id(&image))
            .await
            .ok()??;
        Some(id.trim_start_matches("sha256:").to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_is_always_available() {
        assert!(matches!(
            Runtime::Local.check().await,
            Availability::Available(_)
        ));
        assert_eq!(Runtime::default().name(), "local");
    }

    #[tokio::test]
    async fn docker_check_answers_available_or_skip_never_hangs() {
        let rt = Runtime::Docker(DockerImages::new(None, "mtproxy-rs:test"));
        match rt.check().await {
            Availability::Available(v) => assert!(v.starts_with("docker")),
            Availability::Skip(why) => assert!(why.starts_with("docker runtime skipped")),
        }
    }
}
