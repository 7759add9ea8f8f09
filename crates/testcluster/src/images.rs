//! The stand-in images: a catalogue (`tests/images/images.yaml`, built into the binary) and its
//! materialisation on disk when a cluster starts.
//!
//! A `rootfs: host` image is a folder of programs put first on the container's PATH; the
//! container otherwise sees the machine's files. A `rootfs: minimal` image is a root folder holding
//! only the stand-in binary and the shared libraries `ldd` says it needs; its containers are
//! chrooted into it, so they have no shell.

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

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |e| Error::io(what, e)
}

impl Catalogue {
    /// Reads the catalogue (the built-in one, or `images.yaml` in `dir`) and materialises every
    /// image under `state_dir/images`, with `standin` as the binary behind every tool.
    pub fn materialise(dir: Option<&Path>, state_dir: &Path, standin: &Path) -> Result<Catalogue> {
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
        let mut images = Vec::new();
        for spec in file.images {
            let slug: String = spec
                .name
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            let base = state_dir.join("images").join(&slug);
            let mut env = BTreeMap::new();
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
            let mut names = vec![spec.name.clone()];
            names.extend(spec.aliases.iter().cloned());
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
        Ok(Catalogue { images })
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
    fn builtin_catalogue_parses() {
        let file: CatalogueFile = serde_yaml_ng::from_str(BUILTIN_CATALOGUE).unwrap();
        assert!(file
            .images
            .iter()
            .any(|i| i.name == "sidekill.test/distroless" && i.rootfs == RootFs::Minimal));
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
