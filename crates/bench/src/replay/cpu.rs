//! Where the CPU went during a replay, from `/proc`: the server process's own CPU time and the
//! whole machine's busy fraction. A replay whose machine was (nearly) fully busy measured this
//! machine, not the simulated engines.

use std::time::Instant;

/// `/proc` reports CPU time in clock ticks of `USER_HZ`, which Linux fixes at 100 on every
/// architecture it exposes to user space.
const TICKS_PER_SECOND: f64 = 100.0;

/// Machine busy at or above this fraction of all cores: the replay was bound by this machine.
pub const MACHINE_BOUND_FRACTION: f64 = 0.9;

/// A reading taken at one instant; two of them give rates over the interval.
#[derive(Clone, Copy, Debug)]
pub struct CpuSample {
    at: Instant,
    /// The server's user + system CPU seconds (`None`: no server process or unreadable).
    server_s: Option<f64>,
    /// Machine-wide (busy, total) ticks over all cores (`None`: `/proc/stat` unreadable).
    machine_ticks: Option<(u64, u64)>,
}

/// What happened between two samples.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct CpuUse {
    /// Server CPU, percent of one core.
    pub server_percent: Option<f64>,
    /// All processes on the machine, percent of all cores.
    pub machine_busy_percent: Option<f64>,
    pub cores: usize,
}

impl CpuSample {
    pub fn take(server_pid: Option<u32>) -> Self {
        CpuSample {
            at: Instant::now(),
            server_s: server_pid.and_then(|pid| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                process_cpu_seconds(&stat)
            }),
            machine_ticks: std::fs::read_to_string("/proc/stat")
                .ok()
                .and_then(|stat| machine_ticks(&stat)),
        }
    }

    pub fn since(&self, start: &CpuSample) -> CpuUse {
        let wall = self.at.duration_since(start.at).as_secs_f64().max(1e-9);
        CpuUse {
            server_percent: match (start.server_s, self.server_s) {
                (Some(a), Some(b)) => Some((b - a).max(0.0) / wall * 100.0),
                _ => None,
            },
            machine_busy_percent: match (start.machine_ticks, self.machine_ticks) {
                (Some((busy_a, total_a)), Some((busy_b, total_b))) if total_b > total_a => {
                    Some(busy_b.saturating_sub(busy_a) as f64 / (total_b - total_a) as f64 * 100.0)
                }
                _ => None,
            },
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

impl CpuUse {
    /// Whether the machine, not the simulated engines, limited the replay.
    pub fn machine_bound(&self) -> Option<bool> {
        self.machine_busy_percent
            .map(|busy| busy >= MACHINE_BOUND_FRACTION * 100.0)
    }
}

/// utime + stime of a `/proc/<pid>/stat` line, in seconds. The command name (field 2) is in
/// parentheses and may itself contain spaces and parentheses, so fields are counted after the
/// last `)`.
fn process_cpu_seconds(stat: &str) -> Option<f64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace();
    // After the name: state (3), ppid (4), ... utime is field 14, stime 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / TICKS_PER_SECOND)
}

/// (busy, total) ticks from the aggregate `cpu` line of `/proc/stat`; idle and iowait are idle.
fn machine_ticks(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice]: guest time is already
    // inside user, so only the first eight count.
    let counted = &values[..values.len().min(8)];
    let total: u64 = counted.iter().sum();
    let idle = counted.get(3).copied().unwrap_or(0) + counted.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_cpu_survives_odd_command_names() {
        let stat = "4242 (serve (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0";
        assert_eq!(process_cpu_seconds(stat), Some(3.0));
        assert_eq!(process_cpu_seconds("4242 (short) S 1"), None);
        assert_eq!(process_cpu_seconds("garbage"), None);
    }

    #[test]
    fn machine_ticks_count_idle_and_iowait_as_idle() {
        let stat = "cpu  100 0 50 800 50 0 0 0 30 0\ncpu0 50 0 25 400 25 0 0 0 0 0\n";
        assert_eq!(machine_ticks(stat), Some((150, 1000)));
        assert_eq!(machine_ticks("intr 1 2 3"), None);
    }

    #[test]
    fn this_process_and_machine_are_readable() {
        let start = CpuSample::take(Some(std::process::id()));
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let used = CpuSample::take(Some(std::process::id())).since(&start);
        assert!(used.server_percent.is_some_and(|p| p >= 0.0), "{used:?}");
        assert!(
            used.machine_busy_percent
                .is_none_or(|p| (0.0..=100.0).contains(&p)),
            "{used:?}"
        );
        assert!(used.cores >= 1);
    }
}
