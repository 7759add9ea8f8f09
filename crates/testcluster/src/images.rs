//! The stand-in images: a catalogue (`tests/images/images.yaml`, built into the binary) and its
//! materialisation on disk when a cluster starts.
//!
//! A `rootfs: host` image is a folder of programs put first on the container's PATH; the
//! container otherwise sees the machine's files. A `rootfs: minimal` image is a root folder holding
//! only the stand-in binary and the shared libraries `ldd` says it needs; its containers are
//! chrooted into it, so they have no shell.
//!
//! An image with `binary: sidekill-quitter` holds the real `sidekill-quitter` binary (crates/quitter)
//! instead of the stand-in, at the absolute `paths` it lists, or at every path of
//! `sidekill_policy::nop::NOP_PATHS` for `paths: nopPaths` (its PATH then is
//! `sidekill_policy::nop::NOP_PATH_ENV`), so the nop image and the policy's prediction agree.
//! When the cluster was not given that binary, such an image is listed but cannot be pulled: its
//! containers wait with `ErrImagePull` and a message saying how to provide the binary.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

/// The catalogue shipped with the crate.
const BUILTIN_CATALOGUE: &str = include_str!("../../../tests/images/images.yaml");
/// Files the built-in catalogue names, by their path under `tests/images/`.
const BUILTIN_FILES: &[(&str, &str)] = &[(
    "wrapped/entrypoint.sh",
    include_str!("../../../tests/images/wrapped/entrypoint.sh"),
)];

/// The PATH of a host image after its own bin folder.
const HOST_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RootFs {
    Host,
    Minimal,
}

/// Which program an image's files are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
enum Binary {
    /// The multi-call stand-in (`sidekill-standin`), under each tool's name.
    #[default]
    #[serde(rename = "standin")]
    Standin,
    /// The real `sidekill-quitter` binary (crates/quitter): the nop and the quitter.
    #[serde(rename = "sidekill-quitter")]
    Quitter,
}

/// Where a `binary: sidekill-quitter` image places the binary.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
enum Paths {
    /// A named list: only `nopPaths` (`sidekill_policy::nop::NOP_PATHS`).
    Named(String),
    /// Absolute paths inside the image's root.
    List(Vec<String>),
}

impl Default for Paths {
    fn default() -> Self {
        Paths::List(Vec::new())
    }
}

/// The `paths:` name for `sidekill_policy::nop::NOP_PATHS`.
const NOP_PATHS_NAME: &str = "nopPaths";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImageSpec {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    aliases: Vec<String>,
    rootfs: RootFs,
    #[serde(default)]
    tools: Vec<String>,
    #[serde(default)]
    files: Vec<String>,
    #[serde(default)]
    entrypoint: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    binary: Binary,
    #[serde(default)]
    paths: Paths,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogueFile {
    images: Vec<ImageSpec>,
}

/// One image, ready to run containers from.
#[derive(Debug, Clone)]
pub struct Image {
    /// The catalogue name, e.g. `sidekill.test/sidecar`.
    pub name: String,
    /// What it stands in for.
    pub description: String,
    /// The ENTRYPOINT.
    pub entrypoint: Vec<String>,
    /// Environment every container of the image starts with (PATH included).
    pub env: BTreeMap<String, String>,
    /// The root folder containers are chrooted into, for `rootfs: minimal` images.
    pub root: Option<PathBuf>,
}

impl Image {
    /// Where `program` (an argv\[0\]) resolves inside the container, as a path on this machine,
    /// using the container's PATH; `None` when it is not there or not executable.
    pub fn resolve(&self, program: &str, env_path: Option<&str>) -> Option<PathBuf> {
        let inside = |p: &Path| -> PathBuf {
            match &self.root {
                Some(root) => root.join(p.strip_prefix("/").unwrap_or(p)),
                None => p.to_path_buf(),
            }
        };
        let executable = |p: &Path| -> bool {
            std::fs::metadata(p)
                .map(|m| {
                    m.is_file()
                        && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
                })
                .unwrap_or(false)
        };
        if program.contains('/') {
            let p = inside(Path::new(program));
            return executable(&p).then_some(p);
        }
        let path = env_path
            .map(str::to_owned)
            .or_else(|| self.env.get("PATH").cloned())
            .unwrap_or_else(|| HOST_PATH.to_owned());
        path.split(':')
            .filter(|d| !d.is_empty())
            .map(|d| inside(&Path::new(d).join(program)))
            .find(|p| executable(p))
    }
}

/// The images of one cluster, materialised under its state folder.
#[derive(Debug, Clone, Default)]
pub struct Catalogue {
    images: Vec<(Vec<String>, std::sync::Arc<Image>)>,
    /// Images listed but not runnable here, with the reason (their binary was not given).
    unavailable: Vec<(Vec<String>, String)>,
}

/// The reference without tag or digest: `docker.io/istio/proxyv2:1.2@sha256:..` -> `docker.io/istio/proxyv2`.
pub(crate) fn strip_tag(image: &str) -> &str {
    let no_digest = image.split('@').next().unwrap_or(image);
    match no_digest.rfind(':') {
        Some(i) if !no_digest[i..].contains('/') => &no_digest[..i],
        _ => no_digest,
    }
}

fn ldd_libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let out = std::process::Command::new("ldd")
        .arg(binary)
        .output()
        .map_err(|e| Error::io("running ldd on the stand-in binary", e))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("not a dynamic executable") || text.contains("statically linked") {
        return Ok(Vec::new());
    }
    Ok(text
        .split_whitespace()
        .filter(|w| w.starts_with('/'))
        .map(PathBuf::from)
        .collect())
}

/// Places `binary` at every path of `paths` inside `root`, with the shared libraries it links
/// and the folders a minimal root has. The first path is a hard link to `binary` when both are
/// on one filesystem, else a copy; the others are hard links to the first, so a cluster holds
/// the binary once however many paths name it.
fn place_binary(binary: &Path, root: &Path, paths: &[String], libs: &[PathBuf]) -> Result<()> {
    for d in ["proc", "tmp", "dev", "etc"] {
        std::fs::create_dir_all(root.join(d))
            .map_err(io(format!("creating {}", root.display())))?;
    }
    let mut first: Option<PathBuf> = None;
    for p in paths {
        let dest = root.join(p.trim_start_matches('/'));
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)
                .map_err(io(format!("creating {}", parent.display())))?;
        }
        let _ = std::fs::remove_file(&dest);
        match &first {
            Some(f) => {
                std::fs::hard_link(f, &dest).map_err(io(format!("linking {}", dest.display())))?
            }
            None => {
                if std::fs::hard_link(binary, &dest).is_err() {
                    std::fs::copy(binary, &dest).map_err(io(format!(
                        "copying {} to {}",
                        binary.display(),
                        dest.display()
                    )))?;
                }
                first = Some(dest);
            }
        }
    }
    for lib in libs {
        let dest = root.join(lib.strip_prefix("/").unwrap_or(lib));
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)
                .map_err(io(format!("creating {}", parent.display())))?;
        }
        std::fs::copy(lib, &dest).map_err(io(format!("copying {}", lib.display())))?;
    }
    Ok(())
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |e| Error::io(what, e)
}

impl Catalogue {
    /// Reads the catalogue (the built-in one, or `images.yaml` in `dir`) and materialises every
    /// image under `state_dir/images`, with `standin` as the binary behind every tool and
    /// `quitter` (when given) behind the `binary: sidekill-quitter` images.
    pub fn materialise(
        dir: Option<&Path>,
        state_dir: &Path,
        standin: &Path,
        quitter: Option<&Path>,
    ) -> Result<Catalogue> {
        let (text, source) = match dir {
            Some(d) => {
                let p = d.join("images.yaml");
                (
                    std::fs::read_to_string(&p).map_err(io(format!("reading {}", p.display())))?,
                    p,
                )
            }
            None => (
                BUILTIN_CATALOGUE.to_owned(),
                PathBuf::from("tests/images/images.yaml"),
            ),
        };
        let file: CatalogueFile = serde_yaml_ng::from_str(&text).map_err(|e| Error::Images {
            path: source.clone(),
            message: e.to_string(),
        })?;
        let libs = ldd_libraries(standin)?;
        let quitter_libs = match quitter {
            Some(q) => ldd_libraries(q)?,
            None => Vec::new(),
        };
        let mut images = Vec::new();
        let mut unavailable = Vec::new();
        for spec in file.images {
            let slug: String = spec
                .name
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            let base = state_dir.join("images").join(&slug);
            let mut names = vec![spec.name.clone()];
            names.extend(spec.aliases.iter().cloned());
            let mut env = BTreeMap::new();
            if spec.binary == Binary::Quitter {
                let Some(quitter) = quitter else {
                    unavailable.push((names, format!("the test cluster was not given the sidekill-quitter binary that image {} holds: build it (`cargo build -p sidekill-quitter`) and set SIDEKILL_QUITTER, or ClusterConfig::quitter", spec.name)));
                    continue;
                };
                if spec.rootfs != RootFs::Minimal {
                    return Err(Error::Images {
                        path: source.clone(),
                        message: format!(
                            "{}: binary: sidekill-quitter needs rootfs: minimal",
                            spec.name
                        ),
                    });
                }
                let (paths, path_env): (Vec<String>, &str) = match &spec.paths {
                    Paths::Named(n) if n == NOP_PATHS_NAME => (
                        sidekill_policy::nop::NOP_PATHS.iter().map(|p| (*p).to_owned()).collect(),
                        sidekill_policy::nop::NOP_PATH_ENV,
                    ),
                    Paths::List(l) if !l.is_empty() && l.iter().all(|p| p.starts_with('/')) => {
                        (l.clone(), HOST_PATH)
                    }
                    other => {
                        return Err(Error::Images {
                            path: source.clone(),
                            message: format!("{}: paths must be `{NOP_PATHS_NAME}` or a list of absolute paths, not {other:?}", spec.name),
                        })
                    }
                };
                let root = base.join("root");
                place_binary(quitter, &root, &paths, &quitter_libs)?;
                // The nop image's Env; for others containerd's default PATH (an image without
                // one gets it from the CRI plugin).
                env.insert("PATH".to_owned(), path_env.to_owned());
                env.extend(spec.env.clone());
                images.push((
                    names,
                    std::sync::Arc::new(Image {
                        name: spec.name,
                        description: spec.description,
                        entrypoint: spec.entrypoint,
                        env,
                        root: Some(root),
                    }),
                ));
                continue;
            }
            let root = match spec.rootfs {
                RootFs::Host => {
                    let bin = base.join("bin");
                    std::fs::create_dir_all(&bin)
                        .map_err(io(format!("creating {}", bin.display())))?;
                    for tool in &spec.tools {
                        let link = bin.join(tool);
                        let _ = std::fs::remove_file(&link);
                        std::os::unix::fs::symlink(standin, &link)
                            .map_err(io(format!("linking {}", link.display())))?;
                    }
                    env.insert("PATH".to_owned(), format!("{}:{HOST_PATH}", bin.display()));
                    None
                }
                RootFs::Minimal => {
                    let root = base.join("root");
                    for d in ["usr/local/bin", "proc", "tmp", "dev", "etc"] {
                        std::fs::create_dir_all(root.join(d))
                            .map_err(io(format!("creating {}", root.display())))?;
                    }
                    for tool in &spec.tools {
                        let dest = root.join("usr/local/bin").join(tool);
                        std::fs::copy(standin, &dest)
                            .map_err(io(format!("copying the stand-in to {}", dest.display())))?;
                    }
                    for lib in &libs {
                        let dest = root.join(lib.strip_prefix("/").unwrap_or(lib));
                        if let Some(parent) = dest.parent() {
                            std::fs::create_dir_all(parent)
                                .map_err(io(format!("creating {}", parent.display())))?;
                        }
                        std::fs::copy(lib, &dest)
                            .map_err(io(format!("copying {}", lib.display())))?;
                    }
                    env.insert("PATH".to_owned(), "/usr/local/bin".to_owned());
                    Some(root)
                }
            };
            for f in &spec.files {
                let name = Path::new(f)
                    .file_name()
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from(f));
                let contents = match dir {
                    Some(d) => {
                        std::fs::read_to_string(d.join(f)).map_err(io(format!("reading {f}")))?
                    }
                    None => BUILTIN_FILES
                        .iter()
                        .find(|(p, _)| p == f)
                        .map(|(_, c)| (*c).to_owned())
                        .ok_or_else(|| Error::Images {
                            path: source.clone(),
                            message: format!("file {f} is not built in"),
                        })?,
                };
                let dest = match &root {
                    Some(r) => r.join("usr/local/bin").join(&name),
                    None => base.join("bin").join(&name),
                };
                std::fs::write(&dest, contents)
                    .map_err(io(format!("writing {}", dest.display())))?;
                std::fs::set_permissions(
                    &dest,
                    std::os::unix::fs::PermissionsExt::from_mode(0o755),
                )
                .map_err(io(format!("chmod {}", dest.display())))?;
            }
            env.extend(spec.env.clone());
            images.push((
                names,
                std::sync::Arc::new(Image {
                    name: spec.name,
                    description: spec.description,
                    entrypoint: spec.entrypoint,
                    env,
                    root,
                }),
            ));
        }
        Ok(Catalogue {
            images,
            unavailable,
        })
    }

    /// Why an image the catalogue lists cannot run here, if that is the case.
    pub fn unavailable(&self, reference: &str) -> Option<&str> {
        let want = strip_tag(reference.trim());
        let want_short = want.strip_prefix("docker.io/library/").unwrap_or(want);
        self.unavailable
            .iter()
            .find(|(names, _)| names.iter().any(|n| n == want || n == want_short))
            .map(|(_, why)| why.as_str())
    }

    /// The image a pod's `image:` field selects.
    pub fn find(&self, reference: &str) -> Option<std::sync::Arc<Image>> {
        let want = strip_tag(reference.trim());
        let want_short = want.strip_prefix("docker.io/library/").unwrap_or(want);
        self.images
            .iter()
            .find(|(names, _)| names.iter().any(|n| n == want || n == want_short))
            .map(|(_, i)| i.clone())
    }

    /// Every image: its name and description.
    pub fn names(&self) -> Vec<(String, String)> {
        self.images
            .iter()
            .map(|(_, i)| (i.name.clone(), i.description.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_and_digests_are_stripped() {
        assert_eq!(
            strip_tag("docker.io/istio/proxyv2:1.22.0"),
            "docker.io/istio/proxyv2"
        );
        assert_eq!(strip_tag("localhost:5000/img"), "localhost:5000/img");
        assert_eq!(strip_tag("alpine@sha256:abc"), "alpine");
        assert_eq!(strip_tag("sidekill.test/main"), "sidekill.test/main");
    }

    #[test]
    fn quitter_images_without_the_binary_cannot_be_pulled_and_say_why() {
        let dir = tempfile::tempdir().unwrap();
        // Any executable serves as the stand-in here; only the catalogue's shape is checked.
        let standin = Path::new("/bin/true").canonicalize().unwrap();
        let cat = Catalogue::materialise(None, dir.path(), &standin, None).unwrap();
        assert!(cat.find("docker.io/library/sidekill-nop:0.1.0").is_none());
        let why = cat
            .unavailable("sidekill-nop:0.1.0")
            .expect("listed as unavailable");
        assert!(why.contains("SIDEKILL_QUITTER"), "{why}");
        assert!(cat.unavailable("sidekill.test/sidecar").is_none());

        let with = Catalogue::materialise(None, dir.path(), &standin, Some(&standin)).unwrap();
        let nop = with.find("sidekill-nop:0.1.0").expect("the nop image");
        let root = nop.root.clone().unwrap();
        for p in sidekill_policy::nop::NOP_PATHS {
            assert!(root.join(&p[1..]).is_file(), "{p}");
        }
        assert_eq!(
            nop.env.get("PATH").map(String::as_str),
            Some(sidekill_policy::nop::NOP_PATH_ENV)
        );
        assert!(nop.resolve("sleep", None).is_some(), "sleep is a nop path");
        assert!(nop.resolve("sidecar", None).is_none());
        let q = with.find("sidekill-quitter").expect("the quitter image");
        assert!(q.resolve("/sidekill-quitter", None).is_some());
    }

    #[test]
    fn builtin_catalogue_parses() {
        let file: CatalogueFile = serde_yaml_ng::from_str(BUILTIN_CATALOGUE).unwrap();
        assert!(file
            .images
            .iter()
            .any(|i| i.name == "sidekill.test/distroless" && i.rootfs == RootFs::Minimal));
        let nop = file
            .images
            .iter()
            .find(|i| i.name == "sidekill-nop")
            .expect("the nop image");
        assert_eq!(
            (nop.binary, &nop.paths),
            (Binary::Quitter, &Paths::Named(NOP_PATHS_NAME.into()))
        );
        assert_eq!(nop.entrypoint, vec![sidekill_policy::nop::NOP_PATHS[0]]);
        for i in &file.images {
            for f in &i.files {
                assert!(
                    BUILTIN_FILES.iter().any(|(p, _)| p == f),
                    "{f} is not built in"
                );
            }
        }
    }
}
