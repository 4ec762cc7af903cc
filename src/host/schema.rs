//! The one table of what the system inputs emit: measurement, field names, types, and whether a
//! field is always present. Inputs emit through [`super::Fields`], which types every value from
//! here; the tests check every emitted metric against it. Names and types are Telegraf's
//! (Linux): an existing dashboard reads them unchanged.

/// A field's wire type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A signed integer (`1i`): Telegraf writes its unsigned counters this way too.
    Int,
    /// A float.
    Float,
    /// A string.
    Str,
}

/// When a field is emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// In every metric of the measurement (after the second gather for delta inputs).
    Always,
    /// Depending on options or on what the host has (noted in the input's docs).
    Sometimes,
}

/// One field.
#[derive(Debug)]
pub struct Field {
    /// The name.
    pub name: &'static str,
    /// The type.
    pub kind: Kind,
    /// When it is present.
    pub when: When,
}

/// One measurement.
#[derive(Debug)]
pub struct Measurement {
    /// The measurement name.
    pub name: &'static str,
    /// Its tag keys (always present ones; `host` and global tags not included).
    pub tags: &'static [&'static str],
    /// Its fields.
    pub fields: &'static [Field],
}

macro_rules! fields {
    ($($name:literal : $kind:ident $($when:ident)?),* $(,)?) => {
        &[$(Field { name: $name, kind: Kind::$kind, when: fields!(@when $($when)?) }),*]
    };
    (@when) => { When::Always };
    (@when $w:ident) => { When::$w };
}

/// `cpu`: usage percentages (from the second gather) and, with `collect_cpu_time`, times.
pub static CPU: Measurement = Measurement {
    name: "cpu",
    tags: &["cpu"],
    fields: fields! {
        "time_user": Float Sometimes, "time_system": Float Sometimes, "time_idle": Float Sometimes,
        "time_nice": Float Sometimes, "time_iowait": Float Sometimes, "time_irq": Float Sometimes,
        "time_softirq": Float Sometimes, "time_steal": Float Sometimes, "time_guest": Float Sometimes,
        "time_guest_nice": Float Sometimes, "time_active": Float Sometimes,
        "usage_user": Float, "usage_system": Float, "usage_idle": Float, "usage_nice": Float,
        "usage_iowait": Float, "usage_irq": Float, "usage_softirq": Float, "usage_steal": Float,
        "usage_guest": Float, "usage_guest_nice": Float, "usage_active": Float Sometimes,
    },
};

/// `mem`, from /proc/meminfo.
pub static MEM: Measurement = Measurement {
    name: "mem",
    tags: &[],
    fields: fields! {
        "total": Int, "available": Int, "used": Int, "free": Int,
        "used_percent": Float, "available_percent": Float,
        "active": Int, "buffered": Int, "cached": Int, "commit_limit": Int, "committed_as": Int,
        "dirty": Int, "high_free": Int, "high_total": Int, "huge_pages_free": Int,
        "huge_page_size": Int, "huge_pages_total": Int, "inactive": Int, "low_free": Int,
        "low_total": Int, "mapped": Int, "page_tables": Int, "shared": Int, "slab": Int,
        "sreclaimable": Int, "sunreclaim": Int, "swap_cached": Int, "swap_free": Int,
        "swap_total": Int, "vmalloc_chunk": Int, "vmalloc_total": Int, "vmalloc_used": Int,
        "write_back": Int, "write_back_tmp": Int,
        "active_anon": Int Sometimes, "active_file": Int Sometimes, "inactive_anon": Int Sometimes,
        "inactive_file": Int Sometimes, "percpu": Int Sometimes, "unevictable": Int Sometimes,
    },
};

/// `swap`: sizes (one metric) and pages swapped in and out, in bytes (another).
pub static SWAP: Measurement = Measurement {
    name: "swap",
    tags: &[],
    fields: fields! {
        "total": Int, "used": Int, "free": Int, "used_percent": Float,
        "in": Int, "out": Int,
    },
};

/// `disk`: one metric per mounted filesystem.
pub static DISK: Measurement = Measurement {
    name: "disk",
    tags: &["path", "device", "fstype", "mode"],
    fields: fields! {
        "total": Int, "free": Int, "used": Int, "used_percent": Float,
        "inodes_total": Int, "inodes_free": Int, "inodes_used": Int,
        "inodes_used_percent": Float,
    },
};

/// `diskio`: one metric per block device; rates from the second gather.
pub static DISKIO: Measurement = Measurement {
    name: "diskio",
    tags: &["name"],
    fields: fields! {
        "reads": Int, "writes": Int, "read_bytes": Int, "write_bytes": Int,
        "read_time": Int, "write_time": Int, "io_time": Int, "weighted_io_time": Int,
        "iops_in_progress": Int, "merged_reads": Int, "merged_writes": Int,
        "io_await": Float Sometimes, "io_svctm": Float Sometimes, "io_util": Float,
    },
};

/// `net`: one metric per interface.
pub static NET: Measurement = Measurement {
    name: "net",
    tags: &["interface"],
    fields: fields! {
        "bytes_sent": Int, "bytes_recv": Int, "packets_sent": Int, "packets_recv": Int,
        "err_in": Int, "err_out": Int, "drop_in": Int, "drop_out": Int, "speed": Int,
    },
};

/// `netstat`: sockets by state.
pub static NETSTAT: Measurement = Measurement {
    name: "netstat",
    tags: &[],
    fields: fields! {
        "tcp_established": Int, "tcp_syn_sent": Int, "tcp_syn_recv": Int, "tcp_fin_wait1": Int,
        "tcp_fin_wait2": Int, "tcp_time_wait": Int, "tcp_close": Int, "tcp_close_wait": Int,
        "tcp_last_ack": Int, "tcp_listen": Int, "tcp_closing": Int, "tcp_none": Int,
        "udp_socket": Int,
    },
};

/// `system`: load, CPUs, users (when utmp is readable), uptime; three metrics.
pub static SYSTEM: Measurement = Measurement {
    name: "system",
    tags: &[],
    fields: fields! {
        "load1": Float, "load5": Float, "load15": Float, "n_cpus": Int, "n_physical_cpus": Int,
        "n_users": Int Sometimes, "n_unique_users": Int Sometimes,
        "uptime": Int, "uptime_format": Str,
    },
};

/// `processes`: processes by state.
pub static PROCESSES: Measurement = Measurement {
    name: "processes",
    tags: &[],
    fields: fields! {
        "blocked": Int, "zombies": Int, "stopped": Int, "running": Int, "sleeping": Int,
        "total": Int, "unknown": Int, "dead": Int, "paging": Int, "idle": Int,
        "total_threads": Int, "parked": Int Sometimes,
    },
};

/// `kernel`, from /proc/stat and friends; `ksm_*` with `collect = ["ksm"]`.
pub static KERNEL: Measurement = Measurement {
    name: "kernel",
    tags: &[],
    fields: fields! {
        "boot_time": Int, "context_switches": Int, "interrupts": Int, "processes_forked": Int,
        "entropy_avail": Int, "disk_pages_in": Int Sometimes, "disk_pages_out": Int Sometimes,
        "ksm_full_scans": Int Sometimes, "ksm_max_page_sharing": Int Sometimes,
        "ksm_merge_across_nodes": Int Sometimes, "ksm_pages_shared": Int Sometimes,
        "ksm_pages_sharing": Int Sometimes, "ksm_pages_to_scan": Int Sometimes,
        "ksm_pages_unshared": Int Sometimes, "ksm_pages_volatile": Int Sometimes,
        "ksm_run": Int Sometimes, "ksm_sleep_millisecs": Int Sometimes,
        "ksm_stable_node_chains": Int Sometimes,
        "ksm_stable_node_chains_prune_millisecs": Int Sometimes,
        "ksm_stable_node_dups": Int Sometimes, "ksm_use_zero_pages": Int Sometimes,
        "ksm_general_profit": Int Sometimes,
    },
};

/// `pressure` (kernel with `collect = ["psi"]`): per resource and type, a total and averages.
pub static PRESSURE: Measurement = Measurement {
    name: "pressure",
    tags: &["resource", "type"],
    fields: fields! {
        "total": Int Sometimes, "avg10": Float Sometimes, "avg60": Float Sometimes,
        "avg300": Float Sometimes,
    },
};

/// Every measurement of the system inputs.
pub static ALL: &[&Measurement] = &[
    &CPU, &MEM, &SWAP, &DISK, &DISKIO, &NET, &NETSTAT, &SYSTEM, &PROCESSES, &KERNEL, &PRESSURE,
];

/// The measurement named `name`.
pub fn find(name: &str) -> Option<&'static Measurement> {
    ALL.iter().copied().find(|m| m.name == name)
}

/// Checks metrics against the table: every field known and of its type, every tag listed
/// present. Returns the problems found.
pub fn check(metrics: &[crate::metric::Metric]) -> Vec<String> {
    use crate::metric::FieldValue;
    let mut problems = Vec::new();
    for m in metrics {
        let Some(schema) = find(&m.name) else {
            problems.push(format!("{}: not a system measurement", m.name));
            continue;
        };
        for t in schema.tags {
            if m.tag(t).is_none() {
                problems.push(format!("{}: tag {t} missing", m.name));
            }
        }
        for (k, v) in &m.fields {
            let Some(f) = schema.fields.iter().find(|f| f.name == k) else {
                problems.push(format!("{}: field {k} not in the schema", m.name));
                continue;
            };
            let ok = matches!(
                (f.kind, v),
                (Kind::Int, FieldValue::Int(_))
                    | (Kind::Float, FieldValue::Float(_))
                    | (Kind::Str, FieldValue::Str(_))
            );
            if !ok {
                problems.push(format!(
                    "{}: field {k} is {}, want {:?}",
                    m.name,
                    v.type_name(),
                    f.kind
                ));
            }
        }
    }
    problems
}

/// The fields marked [`When::Always`] of `measurement` that no metric of it carries.
pub fn missing(metrics: &[crate::metric::Metric], measurement: &Measurement) -> Vec<&'static str> {
    measurement
        .fields
        .iter()
        .filter(|f| f.when == When::Always)
        .filter(|f| {
            !metrics
                .iter()
                .filter(|m| m.name == measurement.name)
                .any(|m| m.field(f.name).is_some())
        })
        .map(|f| f.name)
        .collect()
}
