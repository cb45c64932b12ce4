//! Processes we started (kubeconfig exec plugins, the AWS SDK's `credential_process`) must not
//! outlive us. The SDK gives us no handle on its child, and a shell helper has children of
//! its own, so before exiting every process descending from ours is killed.

/// Kills every process descending from this one. Called on every way out: the end of a run
/// and the second signal.
pub(crate) fn kill_all() {
    #[cfg(target_os = "linux")]
    kill_tree(std::process::id());
}

/// Kills `pid` and every process below it, those first: killed first, `pid` would leave its
/// children to init, out of our reach.
pub(crate) fn kill_with_descendants(pid: u32) {
    #[cfg(target_os = "linux")]
    kill_tree(pid);
    // SAFETY: as in kill_tree.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGKILL);
    }
}

/// Kills every process below `root` (not `root` itself).
#[cfg(target_os = "linux")]
fn kill_tree(root: u32) {
    for pid in descendants(root) {
        // SAFETY: kill(2) has no memory effects; a pid that has gone away only gives ESRCH.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGKILL);
        }
    }
}

/// Every process whose chain of parents reaches `root`, read from /proc.
#[cfg(target_os = "linux")]
fn descendants(root: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let parents: Vec<(u32, u32)> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            Some((pid, parent_of(&stat)?))
        })
        .collect();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|(pid, ppid)| *ppid == parent && !found.contains(pid))
                .map(|(pid, _)| *pid)
                .collect::<Vec<_>>(),
        );
        i += 1;
    }
    found.remove(0);
    found
}

/// The parent pid in a `/proc/<pid>/stat` line: the second field after the command name,
/// which is in parentheses and may itself hold spaces and parentheses.
#[cfg(target_os = "linux")]
fn parent_of(stat: &str) -> Option<u32> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn the_parent_is_read_past_a_command_name_with_spaces() {
        assert_eq!(parent_of("42 (a b) c) S 7 42 42 0 -1"), Some(7));
        assert_eq!(parent_of("garbage"), None);
    }

    #[test]
    fn a_grandchild_is_found_and_killed() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 300 & wait"])
            .spawn()
            .expect("sh");
        // Other tests in this process may have children: only this tree is killed.
        let found = (0..100)
            .map(|_| {
                std::thread::sleep(std::time::Duration::from_millis(20));
                descendants(child.id())
            })
            .find(|d| !d.is_empty())
            .expect("the sleep below sh");
        assert!(descendants(std::process::id()).contains(&found[0]));
        kill_tree(child.id());
        // SAFETY: as in kill_tree.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGKILL);
        }
        let status = child.wait().expect("wait");
        assert!(!status.success());
        // The sleep is killed: gone, or a zombie until its new parent reaps it. A SIGKILL is
        // handled at the next schedule, which on a loaded machine can take a while.
        let dead = |pid: &u32| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            stat.is_empty() || stat.contains(") Z ") || stat.contains(") X ")
        };
        for _ in 0..250 {
            if found.iter().all(dead) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        for pid in found {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            assert!(dead(&pid), "{pid} still runs 5 s after SIGKILL: {stat}");
        }
    }
}
