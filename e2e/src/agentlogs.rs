//! Finding the node agent's container log files of a pod (for `testbed logs`).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Log files under `<root>/agent` that belong to pod `namespace/name` (and `container`, if given):
/// files ending in `.log` whose path has a component naming the pod (`name`, `<ns>_<name>` or
/// `<ns>/<name>`), sorted.
pub fn find(
    root: &Path,
    namespace: &str,
    name: &str,
    container: Option<&str>,
) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    walk(&root.join("agent"), &mut found)?;
    let joined = format!("{namespace}_{name}");
    let nested = Path::new(namespace).join(name);
    let mut files: Vec<PathBuf> = found
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .filter(|p| {
            let text = p.to_string_lossy();
            p.components()
                .any(|c| c.as_os_str() == name || c.as_os_str() == joined.as_str())
                || text.contains(&*nested.to_string_lossy())
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
