//! linux/amd64 images from local material, for the container runtime
//! ([`crate::runtime::Runtime::Docker`]) and for operators (`cargo xtask image`).
//!
//! * The base: a Debian bookworm made by `debootstrap --variant=minbase` (with the few
//!   packages the entry script and the C build need) and `docker import`ed, cached under
//!   [`BASE_TAG`]: no registry is needed, and a second run reuses it.
//! * The candidate image: the release `mtproto-proxy` on that base through
//!   `docker/Dockerfile --target prebuilt`, with the entry script `docker/run.sh`.
//! * The reference image: the same around the C binary the user gives (we never build C;
//!   the C binary needs libssl3 and zlib, which the base carries).
//!
//! Everything goes through the `docker` CLI, which negotiates the API version with the
//! engine (see [`crate::runtime`] for why not testcontainers).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context};

/// The cached base image.
pub const BASE_TAG: &str = "mtproxy-rs-base:bookworm";
/// Packages added to the minimal Debian: the entry script's tools (curl, ip) and the C
/// build's libraries (libssl3; zlib is in minbase).
pub const BASE_PACKAGES: &str = "ca-certificates,curl,iproute2,libssl3,procps";
/// The label that marks a base this code made (and its package list).
const BASE_LABEL: &str = "org.mtproxy-rs.base";

/// An image built or found.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Built {
    /// The tag.
    pub tag: String,
    /// `sha256:…`.
    pub id: String,
    /// Whether it was reused from the cache (base only).
    pub cached: bool,
    /// How long it took, seconds.
    pub seconds: f64,
}

fn docker(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running the docker CLI")?;
    if !out.status.success() {
        bail!(
            "docker {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The engine's version and API version, or why it does not answer.
///
/// # Errors
/// When the CLI is missing or the engine does not answer.
pub fn engine() -> anyhow::Result<String> {
    docker(&[
        "version",
        "--format",
        "{{.Server.Version}} (API {{.Server.APIVersion}}, {{.Server.Os}}/{{.Server.Arch}})",
    ])
}

/// The id of `tag`, if it exists.
pub fn image_id(tag: &str) -> Option<String> {
    docker(&["image", "inspect", "--format", "{{.Id}}", tag]).ok()
}

/// The base image: `given` when set (it must exist), else the cached [`BASE_TAG`] when it
/// carries [`BASE_PACKAGES`], else a new one from debootstrap.
///
/// # Errors
/// When the given image is missing, or debootstrap or the import fails.
pub fn ensure_base(given: Option<&str>, say: &dyn Fn(&str)) -> anyhow::Result<Built> {
    let start = Instant::now();
    if let Some(tag) = given {
        let id = image_id(tag).with_context(|| format!("base image {tag} not found"))?;
        return Ok(Built {
            tag: tag.into(),
            id,
            cached: true,
            seconds: start.elapsed().as_secs_f64(),
        });
    }
    let _lock = Lock::take(&std::env::temp_dir().join("mtproxy-rs-base.lock"))?;
    let label = docker(&[
        "image",
        "inspect",
        "--format",
        &format!("{{{{index .Config.Labels \"{BASE_LABEL}\"}}}}"),
        BASE_TAG,
    ])
    .unwrap_or_default();
    if label == BASE_PACKAGES {
        let id = image_id(BASE_TAG).context("base image vanished")?;
        say(&format!("base {BASE_TAG}: cached ({id})"));
        return Ok(Built {
            tag: BASE_TAG.into(),
            id,
            cached: true,
            seconds: start.elapsed().as_secs_f64(),
        });
    }
    which("debootstrap").context(
        "no base image: debootstrap is needed to make one (Debian package debootstrap), or pass --base",
    )?;
    let dir = std::env::temp_dir().join(format!("mtproxy-rs-rootfs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    say(&format!(
        "base: debootstrap --variant=minbase bookworm (+{BASE_PACKAGES}) into {}",
        dir.display()
    ));
    let st = Command::new("debootstrap")
        .args([
            "--variant=minbase",
            &format!("--include={BASE_PACKAGES}"),
            "bookworm",
        ])
        .arg(&dir)
        .stdout(Stdio::null())
        .status()
        .context("running debootstrap (needs root)")?;
    if !st.success() {
        let _ = std::fs::remove_dir_all(&dir);
        bail!("debootstrap failed ({st})");
    }
    // Nothing from the build machine stays in the image.
    let _ = std::fs::remove_dir_all(dir.join("var/cache/apt/archives"));
    let _ = std::fs::create_dir_all(dir.join("var/cache/apt/archives/partial"));
    say("base: docker import");
    let tar = Command::new("tar")
        .arg("-C")
        .arg(&dir)
        .args(["-c", "."])
        .stdout(Stdio::piped())
        .spawn()
        .context("tar")?;
    let out = Command::new("docker")
        .args([
            "import",
            "--change",
            &format!("LABEL {BASE_LABEL}=\"{BASE_PACKAGES}\""),
            "--change",
            "CMD [\"/bin/bash\"]",
            "-",
            BASE_TAG,
        ])
        .stdin(tar.stdout.context("tar stdout")?)
        .output()
        .context("docker import")?;
    let _ = std::fs::remove_dir_all(&dir);
    if !out.status.success() {
        bail!(
            "docker import: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let id = image_id(BASE_TAG).context("imported base not found")?;
    Ok(Built {
        tag: BASE_TAG.into(),
        id,
        cached: false,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Builds `tag` from `binary` on `base` with `docker/Dockerfile --target prebuilt` (a
/// context of its own holding only the Dockerfile, the entry script and the binary).
///
/// # Errors
/// When the files cannot be staged or `docker build` fails (its output is in the error).
pub fn build_image(project: &Path, base: &str, binary: &Path, tag: &str) -> anyhow::Result<Built> {
    let start = Instant::now();
    let ctx = std::env::temp_dir().join(format!(
        "mtproxy-rs-image-{}-{}",
        std::process::id(),
        tag.replace([':', '/'], "_")
    ));
    let _ = std::fs::remove_dir_all(&ctx);
    std::fs::create_dir_all(ctx.join("docker"))?;
    std::fs::copy(project.join("docker/Dockerfile"), ctx.join("Dockerfile"))?;
    std::fs::copy(project.join("docker/run.sh"), ctx.join("docker/run.sh"))?;
    std::fs::copy(binary, ctx.join("mtproto-proxy"))
        .with_context(|| format!("copying {}", binary.display()))?;
    let out = Command::new("docker")
        .arg("build")
        .args(["--target", "prebuilt", "--build-arg"])
        .arg(format!("RUNTIME_IMAGE={base}"))
        .args(["--build-arg", "BINARY=mtproto-proxy", "-t", tag, "-f"])
        .arg(ctx.join("Dockerfile"))
        .arg(&ctx)
        .stdin(Stdio::null())
        .output()
        .context("docker build")?;
    let _ = std::fs::remove_dir_all(&ctx);
    if !out.status.success() {
        bail!(
            "docker build of {tag} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(Built {
        tag: tag.into(),
        id: image_id(tag).context("built image not found")?,
        cached: false,
        seconds: start.elapsed().as_secs_f64(),
    })
}

fn which(cmd: &str) -> anyhow::Result<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(cmd))
        .find(|p| p.is_file())
        .with_context(|| format!("{cmd} not found"))
}

/// An exclusive lock on a file, held until dropped (two runs do not make the base twice).
struct Lock(#[allow(dead_code)] nix::fcntl::Flock<std::fs::File>);

impl Lock {
    fn take(path: &Path) -> anyhow::Result<Self> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        let l = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| e)
            .context("locking the base image cache")?;
        Ok(Lock(l))
    }
}
