//! The image map: which host program runs a container image, since there is no container runtime.
//!
//! ```json
//! {"images": [{"prefix": "redis",
//!              "binaries": {"redis-server": "/usr/bin/redis-server"},
//!              "default": ["redis-server"],
//!              "append": {"redis-server": ["--protected-mode", "no"]}}],
//!  "shell": "/bin/sh"}
//! ```
//!
//! An image (registry host, `library/`, tag and digest removed) is matched against `prefix` as a
//! plain string prefix; the longest matching prefix wins. argv[0] of the container's command is
//! mapped by its basename through `binaries` (a value may be several words, e.g.
//! `/path/node-agent standin-kvrocks`); `sh` and `bash` run `shell`; an absolute path that exists
//! on the host runs as it is. A container without a command runs `default`, then its args.
//! `append` (optional) adds arguments after the container's own when that binary runs: it stands
//! for what an image bakes in (the official redis image builds redis with protected mode off).
//!
//! The same table is written as wrapper scripts into one directory per image entry, first on the
//! container's `PATH`, so `sh -c 'exec kvrocks ...'` finds the mapped program too.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::error::{AgentError, AgentResult};

/// `PATH` of container processes after the image's wrapper directory.
pub const HOST_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The parsed image map file.
#[derive(Clone, Debug, Deserialize)]
pub struct ImageMap {
    /// One entry per image prefix.
    pub images: Vec<ImageEntry>,
    /// The host shell that `sh` and `bash` map to.
    #[serde(default = "default_shell")]
    pub shell: String,
}

/// How one image prefix maps to host programs.
#[derive(Clone, Debug, Deserialize)]
pub struct ImageEntry {
    /// Image repository prefix, e.g. `apache/kvrocks`.
    pub prefix: String,
    /// Basename of a container binary -> host command (one or more words).
    #[serde(default)]
    pub binaries: BTreeMap<String, String>,
    /// The image's entrypoint + cmd, used when the container has no command.
    #[serde(default)]
    pub default: Vec<String>,
    /// Arguments appended when a binary runs (keyed like `binaries`).
    #[serde(default)]
    pub append: BTreeMap<String, Vec<String>>,
}

fn default_shell() -> String {
    "/bin/sh".to_owned()
}

/// Why a container's program cannot be found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unmapped {
    /// No entry's prefix matches the image.
    #[error("image {image:?} (repository {repository:?}) is not in the testbed's image map")]
    Image {
        /// The image as written in the pod.
        image: String,
        /// The repository it was reduced to.
        repository: String,
    },
    /// The image is mapped but the program is not.
    #[error(
        "image {image:?}: binary {binary:?} is not in the image map (not in `binaries`, not a shell, not an existing absolute host path)"
    )]
    Binary {
        /// The image.
        image: String,
        /// argv[0] of the command.
        binary: String,
    },
    /// Neither a command nor a default entrypoint.
    #[error("image {image:?}: the container has no command and the image map gives no `default`")]
    NoCommand {
        /// The image.
        image: String,
    },
}

impl ImageMap {
    /// Reads and parses the file.
    pub fn load(path: &Path) -> AgentResult<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| AgentError::io("read", path, e))?;
        Self::parse(&text).map_err(|reason| AgentError::invalid(path.display().to_string(), reason))
    }

    /// Parses the JSON text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let map: Self = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if let Some(bad) = map.images.iter().find(|e| e.prefix.is_empty()) {
            return Err(format!("an entry has an empty prefix: {:?}", bad.binaries));
        }
        Ok(map)
    }

    /// The entry (and its index) for an image: the longest prefix of its repository.
    pub fn entry(&self, image: &str) -> Option<(usize, &ImageEntry)> {
        let repo = repository(image);
        self.images
            .iter()
            .enumerate()
            .filter(|(_, e)| repo.starts_with(&e.prefix))
            .max_by_key(|(_, e)| e.prefix.len())
    }

    /// The host argv for a container: `command` (or the image default) then `args`.
    pub fn resolve(
        &self,
        image: &str,
        command: &[String],
        args: &[String],
    ) -> Result<Vec<String>, Unmapped> {
        let (_, entry) = self.entry(image).ok_or_else(|| Unmapped::Image {
            image: image.to_owned(),
            repository: repository(image).to_owned(),
        })?;
        let base = if command.is_empty() {
            &entry.default
        } else {
            command
        };
        let Some((program, rest)) = base.split_first() else {
            return Err(Unmapped::NoCommand {
                image: image.to_owned(),
            });
        };
        let (mut argv, append) = self.map_program(entry, image, program)?;
        argv.extend(rest.iter().cloned());
        argv.extend(args.iter().cloned());
        argv.extend(append);
        Ok(argv)
    }

    /// The host argv for an exec probe or hook inside a container of `image`.
    pub fn resolve_exec(&self, image: &str, command: &[String]) -> Result<Vec<String>, Unmapped> {
        if command.is_empty() {
            return Err(Unmapped::NoCommand {
                image: image.to_owned(),
            });
        }
        self.resolve(image, command, &[])
    }

    /// The wrapper directory of an image's entry (see [`ImageMap::write_wrappers`]).
    pub fn wrapper_dir(&self, root: &Path, image: &str) -> Option<PathBuf> {
        self.entry(image).map(|(i, _)| wrapper_dir(root, i))
    }

    /// Writes `<root>/images/<index>/bin/<binary>` shell wrappers for every mapped binary.
    pub fn write_wrappers(&self, root: &Path) -> AgentResult<()> {
        use std::os::unix::fs::PermissionsExt;
        for (index, entry) in self.images.iter().enumerate() {
            let dir = wrapper_dir(root, index);
            std::fs::create_dir_all(&dir)
                .map_err(|e| AgentError::io("create directory", &dir, e))?;
            for (name, command) in &entry.binaries {
                if name.contains('/') || name.is_empty() {
                    continue;
                }
                let words: Vec<String> = command.split_whitespace().map(shell_quote).collect();
                let append: Vec<String> = entry
                    .append
                    .get(name)
                    .into_iter()
                    .flatten()
                    .map(|a| shell_quote(a))
                    .collect();
                let script = format!(
                    "#!/bin/sh\nexec {} \"$@\" {}\n",
                    words.join(" "),
                    append.join(" ")
                );
                let path = dir.join(name);
                std::fs::write(&path, script).map_err(|e| AgentError::io("write", &path, e))?;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                    .map_err(|e| AgentError::io("chmod", &path, e))?;
            }
        }
        Ok(())
    }

    fn map_program(
        &self,
        entry: &ImageEntry,
        image: &str,
        program: &str,
    ) -> Result<(Vec<String>, Vec<String>), Unmapped> {
        let base = program.rsplit('/').next().unwrap_or(program);
        if let Some(command) = entry.binaries.get(base) {
            let words: Vec<String> = command.split_whitespace().map(str::to_owned).collect();
            if !words.is_empty() {
                let append = entry.append.get(base).cloned().unwrap_or_default();
                return Ok((words, append));
            }
        }
        if base == "sh" || base == "bash" {
            return Ok((vec![self.shell.clone()], Vec::new()));
        }
        if program.starts_with('/') && Path::new(program).is_file() {
            return Ok((vec![program.to_owned()], Vec::new()));
        }
        Err(Unmapped::Binary {
            image: image.to_owned(),
            binary: program.to_owned(),
        })
    }
}

fn wrapper_dir(root: &Path, index: usize) -> PathBuf {
    root.join("images").join(index.to_string()).join("bin")
}

/// An image reduced to its repository: no registry host, no `library/`, no tag, no digest.
/// `docker.io/library/redis:7.2` -> `redis`; `apache/kvrocks:2.10.1` -> `apache/kvrocks`.
pub fn repository(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    let image = match image.rfind(':') {
        Some(colon) if !image[colon..].contains('/') => &image[..colon],
        _ => image,
    };
    let image = match image.split_once('/') {
        Some((host, rest)) if host.contains('.') || host.contains(':') || host == "localhost" => {
            rest
        }
        _ => image,
    };
    image.strip_prefix("library/").unwrap_or(image)
}

/// Single-quotes a word for `/bin/sh`.
pub fn shell_quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
    {
        return word.to_owned();
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> ImageMap {
        ImageMap::parse(
            r#"{"images": [
                {"prefix": "apache/kvrocks", "binaries": {"kvrocks": "/bin/agent standin-kvrocks"}, "default": ["kvrocks"]},
                {"prefix": "redis", "binaries": {"redis-server": "/usr/bin/redis-server", "redis-cli": "/usr/bin/redis-cli"},
                 "default": ["redis-server"], "append": {"redis-server": ["--protected-mode", "no"]}},
                {"prefix": "redis-stack", "binaries": {}, "default": []}
            ], "shell": "/bin/dash"}"#,
        )
        .unwrap()
    }

    fn strings(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| (*w).to_owned()).collect()
    }

    #[test]
    fn repository_strips_registry_tag_digest_and_library() {
        assert_eq!(repository("redis:7.2"), "redis");
        assert_eq!(repository("docker.io/library/redis:7.2"), "redis");
        assert_eq!(repository("apache/kvrocks"), "apache/kvrocks");
        assert_eq!(repository("ghcr.io/x/op:dev@sha256:abc"), "x/op");
        assert_eq!(repository("localhost:5000/app:1"), "app");
        assert_eq!(repository("localhost/app"), "app");
    }

    #[test]
    fn longest_prefix_wins() {
        let m = map();
        assert_eq!(m.entry("redis:7.2").map(|e| e.0), Some(1));
        assert_eq!(m.entry("redis-stack:latest").map(|e| e.0), Some(2));
        assert!(m.entry("busybox").is_none());
    }

    #[test]
    fn command_args_default_and_append() {
        let m = map();
        assert_eq!(
            m.resolve(
                "redis:7.2",
                &strings(&["redis-server"]),
                &strings(&["--port", "6379"])
            ),
            Ok(strings(&[
                "/usr/bin/redis-server",
                "--port",
                "6379",
                "--protected-mode",
                "no"
            ]))
        );
        assert_eq!(
            m.resolve("apache/kvrocks:2.10", &[], &strings(&["-c", "/c.conf"])),
            Ok(strings(&["/bin/agent", "standin-kvrocks", "-c", "/c.conf"]))
        );
        assert_eq!(
            m.resolve(
                "redis",
                &strings(&["/usr/local/bin/redis-cli", "ping"]),
                &[]
            ),
            Ok(strings(&["/usr/bin/redis-cli", "ping"]))
        );
        assert_eq!(
            m.resolve("redis", &strings(&["bash", "-c", "echo"]), &[]),
            Ok(strings(&["/bin/dash", "-c", "echo"]))
        );
        assert_eq!(
            m.resolve("redis", &strings(&["/bin/sh", "-c", "x"]), &[]),
            Ok(strings(&["/bin/dash", "-c", "x"]))
        );
    }

    #[test]
    fn unmapped_images_and_binaries_are_named() {
        let m = map();
        let err = m
            .resolve("busybox:1", &strings(&["sleep"]), &[])
            .unwrap_err();
        assert!(err.to_string().contains("busybox:1"), "{err}");
        let err = m
            .resolve("redis", &strings(&["redis-benchmark"]), &[])
            .unwrap_err();
        assert!(matches!(err, Unmapped::Binary { .. }), "{err}");
        let err = m.resolve("redis-stack", &[], &[]).unwrap_err();
        assert!(matches!(err, Unmapped::NoCommand { .. }), "{err}");
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("/usr/bin/x"), "/usr/bin/x");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
