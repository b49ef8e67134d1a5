//! Finding the container log files of a pod (for `testbed logs`): the nodes' kubelets keep them
//! under `<root>/nodes/<node>/pod-logs/<ns>_<name>_<uid>/<container>/`. A test binary's testbed
//! leaves them behind until its next run, for a post-mortem.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Log files of the nodes that belong to pod `namespace/name` (and `container`, if given):
/// files ending in `.log` under a directory `<ns>_<name>_<uid>`, sorted.
pub fn find(
    root: &Path,
    namespace: &str,
    name: &str,
    container: Option<&str>,
) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    if let Ok(nodes) = std::fs::read_dir(root.join("nodes")) {
        for node in nodes.flatten() {
            walk(&node.path().join("pod-logs"), &mut found)?;
        }
    }
    let pod_dir = format!("{namespace}_{name}_");
    let mut files: Vec<PathBuf> = found
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .filter(|p| {
            p.components().any(|c| {
                c.as_os_str()
                    .to_string_lossy()
                    .strip_prefix(&pod_dir)
                    .is_some_and(|uid| !uid.is_empty() && !uid.contains('_'))
            })
        })
        .filter(|p| {
            container.is_none_or(|c| {
                p.file_stem()
                    .is_some_and(|s| s.to_string_lossy().starts_with(c))
                    || p.components().any(|part| part.as_os_str() == c)
            })
        })
        .collect();
    files.sort();
    Ok(files)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("read directory", dir, e)),
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => walk(&path, out)?,
            Ok(t) if t.is_file() => out.push(path),
            _ => {}
        }
    }
    Ok(())
}
