//! Which processes map a limiter file: `reset` and `rm` refuse, without `--force`, while any
//! other process still uses the file.
//!
//! A process that uses a limiter maps its file for as long as it holds the `Limiter`, so the
//! file's device and inode appear in that process's `/proc/PID/maps`. Only processes whose
//! maps this user may read are seen: all of them for root, one's own otherwise.

use std::fs;
use std::os::unix::fs::MetadataExt;

/// A process mapping the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapper {
    /// Its process id.
    pub pid: u32,
    /// Its command name (`/proc/PID/comm`), or `?`.
    pub command: String,
}

/// What a scan of `/proc` found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Processes other than this one that map the file.
    pub mappers: Vec<Mapper>,
    /// Processes whose maps could not be read (other users' processes, when not root).
    pub unreadable: usize,
    /// Whether the file's mode lets other users in (set by the caller).
    pub shared: bool,
}

impl Scan {
    /// `1234 (python3), 5678 (hostlimit)`.
    pub fn describe(&self) -> String {
        self.mappers
            .iter()
            .map(|m| format!("{} ({})", m.pid, m.command))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Finds the processes, other than this one, that map the file `meta` describes.
pub fn scan(meta: &fs::Metadata) -> Scan {
    let (major, minor) = split_dev(meta.dev());
    let inode = meta.ino();
    let me = std::process::id();
    let mut scan = Scan::default();
    let Ok(entries) = fs::read_dir("/proc") else {
        return scan;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let proc_dir = entry.path();
        match fs::read_to_string(proc_dir.join("maps")) {
            Ok(maps) => {
                if maps_contain(&maps, major, minor, inode) {
                    let command = fs::read_to_string(proc_dir.join("comm"))
                        .map_or_else(|_| "?".into(), |c| c.trim().to_string());
                    scan.mappers.push(Mapper { pid, command });
                }
            }
            // The process exited while we looked: it maps nothing any more.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(_) => scan.unreadable += 1,
        }
    }
    scan.mappers.sort_by_key(|m| m.pid);
    scan
}

/// The device's major and minor numbers, as Linux encodes them in a `dev_t` (glibc's
/// `gnu_dev_major` and `gnu_dev_minor`).
fn split_dev(dev: u64) -> (u64, u64) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major, minor)
}

/// Whether a `/proc/PID/maps` text has a mapping of device `major:minor`, inode `inode`.
///
/// Each line reads `ADDRESS PERMS OFFSET MAJOR:MINOR INODE [PATH]`, the device in hex and
/// the inode in decimal.
fn maps_contain(maps: &str, major: u64, minor: u64, inode: u64) -> bool {
    maps.lines().any(|line| {
        let mut fields = line.split_whitespace().skip(3);
        let (Some(dev), Some(ino)) = (fields.next(), fields.next()) else {
            return false;
        };
        let Some((maj, min)) = dev.split_once(':') else {
            return false;
        };
        u64::from_str_radix(maj, 16) == Ok(major)
            && u64::from_str_radix(min, 16) == Ok(minor)
            && ino.parse::<u64>() == Ok(inode)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_maps_lines() {
        let maps = "\
7f00 rw-s 00000000 00:1a 4242                       /dev/shm/hostlimit/api
7f01 r-xp 00000000 fd:01 4242                       /usr/bin/other
";
        assert!(maps_contain(maps, 0, 0x1a, 4242));
        assert!(maps_contain(maps, 0xfd, 1, 4242));
        assert!(!maps_contain(maps, 0, 0x1a, 4243));
        assert!(!maps_contain(maps, 0, 0x1b, 4242));
        assert!(!maps_contain("", 0, 0x1a, 4242));
    }

    #[test]
    fn splits_device_numbers() {
        assert_eq!(split_dev(0x1a), (0, 0x1a));
        assert_eq!(split_dev(0xfd01), (0xfd, 1));
    }
}
